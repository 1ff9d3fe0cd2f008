"""The registration reader: the letters painted on the aircraft → its registration → the
registry's ICAO type, and how that reading joins the image's answer.

Text detection and recognition are PP-OCRv4's (PaddleOCR's DB detector and SVTR-LCNet
recognizer, Apache-2.0) as the ``rapidocr-onnxruntime`` wheel ships them: ONNX files inside the
wheel, run by onnxruntime — nothing is downloaded. Each recognised line is split into tokens
(:func:`model.registration.tokens`), each token into the registrations the grammar allows
(:func:`model.registration.candidates`), and only candidates found in the registry
(:class:`model.registry.Registry`) are kept.

Fusion (:func:`fuse`), the one place where the reading changes an answer:

- the registry's manufacturer agrees with stage 1's, or stage 1 is unsure and the registry names
  one of the two manufacturers it hesitated between: the answer's type is the registry's (level
  ``type``, ``source`` ``"registration"``), and the answer is no longer unsure;
- otherwise (a sure stage 1 that disagrees: a re-used registration, a misread, or a word that
  happens to be a registration): the image's answer stands and the registration is reported
  beside it with ``agrees: false``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dataset.decode import decode_scaled
from dataset.schema import family_of

from . import registration as grammar
from .localize import full_size
from .registry import Entry, Registry

#: Longest side (pixels) the OCR sees; larger uploads are reduced first. 1600 rather than
#: rapidocr's 2000: a registration on a 4,000-px camera file is large enough at 1600, and at 2000
#: the detector's work per photo is 1.6x (0.49 → images/s with reading at 4,000 px, 2 cores).
MAX_SIDE = 1600
#: Share of the aircraft box's width/height added on each side before reading inside it (the
#: registration is painted on the rear fuselage, which a tight box can clip).
BOX_MARGIN = 0.08
#: Shortest side (pixels) PP-OCR's detector sees: smaller images are enlarged to it (rapidocr's
#: ``det_limit_side_len``, default 736). 1024: on 150 FGVC photos of about 1,000 px the read rate
#: rose from 0.193 to 0.267 (and family agreement from 26/29 to 39/40) for about twice the time
#: (0.62 → 1.12 s per photo, one busy core; 2026-12-07).
DET_MIN_SIDE = 1024
#: Minimum recognition confidence of a line (rapidocr's ``text_score`` default).
MIN_TEXT_SCORE = 0.5
#: Answer ``source`` when the type came from the registration.
SOURCE = "registration"


@dataclass(frozen=True)
class Reading:
    """A registration read on the image and found in the registry.

    Attributes:
        text: the registration as the registry writes it (``"D-ABYI"``).
        read: the OCR's characters it came from (``"D-A8YI"``).
        entry: the registry's :class:`~model.registry.Entry` (ICAO type, description).
        box: ``[left, top, right, bottom]`` of the text line in the uploaded image's pixels
            (after EXIF rotation; right/bottom exclusive).
        score: the OCR's recognition confidence of the line, in [0, 1].
        corrections: characters changed to fit the state's format.
    """

    text: str
    read: str
    entry: Entry
    box: list[int]
    score: float
    corrections: int


class RegistrationReader:
    """OCR + grammar + registry. Thread-safe: one onnxruntime session set per process, loaded on
    first use (about 0.5 s), run under a lock-free ``InferenceSession.run``.

    Args:
        registry: the loaded registry (:func:`model.registry.load_configured`).
        threads: onnxruntime intra-op threads per OCR call (1: one core per reading, so that
            concurrent requests each get one).
    """

    def __init__(self, registry: Registry, threads: int = 1):
        self.registry = registry
        self.threads = threads
        self._ocr = None
        self._lock = threading.Lock()

    def _engine(self):
        with self._lock:
            if self._ocr is None:
                from rapidocr_onnxruntime import RapidOCR  # deferred: onnxruntime only when reading is asked

                self._ocr = RapidOCR(use_cls=False, max_side_len=MAX_SIDE, det_limit_side_len=DET_MIN_SIDE,
                                     intra_op_num_threads=self.threads,
                                     inter_op_num_threads=1, text_score=MIN_TEXT_SCORE)
            return self._ocr

    def warm_up(self) -> None:
        """Load the OCR models and run them once on a blank image."""
        self.lines(Image.new("RGB", (64, 64), "white"))

    def lines(self, image: Image.Image) -> list[tuple[str, float, list[int]]]:
        """The text lines PP-OCR finds in an RGB image: ``(text, confidence in [0, 1], box)``,
        ``box`` = ``[left, top, right, bottom]`` in ``image``'s pixels."""
        res, _ = self._engine()(image.convert("RGB"), use_cls=False)
        out = []
        for quad, text, score in res or []:
            q = np.asarray(quad, np.float64)
            out.append((str(text), float(score), [int(q[:, 0].min()), int(q[:, 1].min()),
                                                  int(np.ceil(q[:, 0].max())), int(np.ceil(q[:, 1].max()))]))
        return out

    def read_upload(self, source, box: list[int] | None = None) -> Reading | None:
        """Read the registration of an upload (encoded bytes, a path, or a decoded full-size
        ``PIL.Image.Image``): decoded again with its longest side near :data:`MAX_SIDE` (a large
        JPEG at a reduced DCT scale, :func:`dataset.decode.decode_scaled`), then :meth:`read`
        inside ``box`` (uploaded pixels) or on the whole image. The one decode for reading, used by
        :meth:`model.pipeline.Pipeline.read` and the R side.

        Raises:
            dataset.decode.ImageDecodeError: the upload cannot be decoded.
        """
        if isinstance(source, Image.Image):
            img, full = source, source.size
        else:
            img, s = decode_scaled(source, min_size=(MAX_SIDE // 2, MAX_SIDE // 2))
            full = img.size if s == 1 else full_size(source)
        return self.read(img, box, scale=(full[0] / img.width, full[1] / img.height))

    def read(self, image: Image.Image, box: list[int] | None = None, scale: tuple[float, float] = (1.0, 1.0)
             ) -> Reading | None:
        """Read the registration painted on ``image``.

        Args:
            image: the decoded RGB upload (EXIF rotation applied), possibly reduced.
            box: the aircraft's box in the *uploaded* image's pixels, or ``None`` (whole image).
            scale: ``(sx, sy)``, uploaded pixels per pixel of ``image`` (1.0 when not reduced).
        Returns:
            The best :class:`Reading` — fewest corrections, then highest confidence — or
            ``None`` when no line holds a registration the registry knows (no text, other
            scripts, an unknown or retired airframe).
        """
        sx, sy = scale
        x0 = y0 = 0
        if box is not None:
            l, t, r, b = box
            mw, mh = (r - l) * BOX_MARGIN, (b - t) * BOX_MARGIN
            x0, y0 = max(0, int((l - mw) / sx)), max(0, int((t - mh) / sy))
            image = image.crop((x0, y0, min(image.width, int(np.ceil((r + mw) / sx))),
                                min(image.height, int(np.ceil((b + mh) / sy)))))
        if image.width > MAX_SIDE or image.height > MAX_SIDE:
            f = MAX_SIDE / max(image.size)
            small = image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))), Image.BILINEAR)
            sx, sy = sx * image.width / small.width, sy * image.height / small.height
            x0, y0 = x0 * small.width / image.width, y0 * small.height / image.height
            image = small
        best = None
        for text, score, (l, t, r, b) in self.lines(image):
            for tok, cand in grammar.line_candidates(text):
                entry = self.registry.get(cand.key)
                rank = (cand.corrections, -score)
                if entry is not None and (best is None or rank < best[0]):
                    px = [round((l + x0) * sx), round((t + y0) * sy), round((r + x0) * sx), round((b + y0) * sy)]
                    best = (rank, Reading(entry.registration, tok, entry, px, round(score, 4), cand.corrections))
        return None if best is None else best[1]


def fuse(answer: dict, reading: Reading | None) -> dict:
    """Join a reading to one answer of :meth:`model.cascade.Cascade.predict` (in place).

    Adds ``registration``: ``None`` without a reading, else ``{"text", "icao_type",
    "description", "box", "agrees"}`` (``agrees``: the registry's manufacturer is the answer's
    manufacturer). When the registry's manufacturer agrees with a sure stage 1, or stage 1 is
    unsure and the registry names one of its two branches, the answer becomes the registry's
    type: ``manufacturer``/``family``/``type`` labels from the registry (the manufacturer's
    probability stays stage 1's; family and type probabilities ``None``: not the image's),
    ``answer = {"level": "type", "label", "text", "source": "registration"}``,
    ``unsure = False`` and ``unsure_reasons = []``. A "not an aircraft" answer is never changed.

    Returns:
        ``answer``.
    """
    answer["answer"].setdefault("source", "image")
    if reading is None:
        answer["registration"] = None
        return answer
    e = reading.entry
    mine = answer["manufacturer"]["label"]
    branches = {b["manufacturer"]: b for b in answer.get("branches", [])}
    answer["registration"] = {"text": reading.text, "icao_type": e.icao_type, "description": e.description,
                              "box": list(reading.box), "agrees": mine is not None and e.manufacturer == mine}
    if answer["answer"]["level"] == "none":
        return answer
    if not (e.manufacturer == mine or (answer["unsure"] and e.manufacturer in branches)):
        return answer
    fam = family_of(e.icao_type) or None
    p_m = branches[e.manufacturer]["manufacturer_probability"] if e.manufacturer in branches else None
    answer["manufacturer"] = {"label": e.manufacturer, "probability": p_m}
    answer["family"] = {"label": fam, "probability": None, "joint_probability": None}
    answer["type"] = {"label": e.icao_type, "probability": None, "joint_probability": None}
    words = f"{e.manufacturer} {e.icao_type}" if e.manufacturer != "Other" else \
        f"{e.icao_type} ({e.description})" if e.description else e.icao_type
    answer["answer"] = {"level": "type", "label": e.icao_type, "text": words, "source": SOURCE}
    answer["unsure"] = False
    answer["unsure_reasons"] = []  # the registration settles what the image left open
    answer["registration"]["agrees"] = True
    return answer
