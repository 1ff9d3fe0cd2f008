"""The one inference pipeline: an encoded image in, an answer out.

Like a keras-hub task with its preprocessor, the pipeline is split where the work changes kind:

- :meth:`Pipeline.prepare` — the per-image CPU work (decode once, the localizer's input, the
  classifier's input). Callers run it wherever suits them: the server's request threads, the
  decode pool of ``make score``, a plain loop.
- :meth:`Pipeline.locate` — batched: the localizer on whole images (only for a version that
  crops to the aircraft: :attr:`Pipeline.two_phase`), then :meth:`Pipeline.crop` per image (box
  from the activation map, crop, resize).
- :meth:`Pipeline.forward` — batched: the gate's forward pass (a localizer that only gates),
  the cascade's forward passes with test-time augmentation, routing, and the answer.
- :meth:`Pipeline.read` — per image, only when asked (``prepare(..., read=True)``) and a
  registry is loaded: the registration painted on the aircraft, read on the full-resolution
  upload inside the aircraft's box when there is one (:mod:`model.reader`). :meth:`forward`
  joins the reading to the answer (:func:`model.reader.fuse`): the one place where it can
  change the answer.
- :meth:`Pipeline.predict` — all of it for one batch of images (``make score``, evaluation's
  negatives, the R side, tests).

Every optional step is one stage (:attr:`Pipeline.stages`), switched on by what the version
holds: ``gate`` and ``crop`` (``localizer.keras``; the crop rule in the preprocessing spec),
``tta`` (``labels["tta"]``). The server (:mod:`api.engine`) owns only threads and queues: it
calls :meth:`prepare` and :meth:`crop` in request threads and :meth:`locate` / :meth:`forward`
in its batcher; ``make score`` (:mod:`model.score`), ``python -m model evaluate``
(:mod:`model.evaluate`, on the dataset's cached pixels through :meth:`Pipeline.from_pixels`)
and the benches call the same methods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import localize as loc
from . import preprocessing as pp
from . import reader as rd
from .cascade import Cascade
from .registry import Registry


@dataclass
class Inputs:
    """One image on its way through the pipeline (made by :meth:`Pipeline.prepare`).

    Attributes:
        x: float32 ``(H, W, 3)``, the classifier's input (``spec.input_shape``); ``None`` until
            :meth:`Pipeline.crop` made it (two-phase versions).
        x_loc: float32 ``(S, S, 3)`` in [0, 1], the localizer's input (whole image); ``None``
            without a localizer.
        image: the decoded RGB image, kept only until the crop is cut (two-phase versions).
        dct_scale: the JPEG DCT scale ``image`` was decoded at (1, 2, 4 or 8).
        size: ``(width, height)`` of the full-size image (the pixels boxes are given in).
        box: the crop the answer came from (``[left, top, right, bottom]``), or ``None``.
        aircraft: the localizer's aircraft probability in [0, 1], or ``None`` (not measured yet,
            or no localizer).
        cam: the localizer's class activation map (float64 ``(S/32, S/32)``) until cropped.
        source: the upload (bytes, path or decoded image), kept only until :meth:`Pipeline.read`
            read its registration (``prepare(..., read=True)``).
        reading: the registration read (:class:`model.reader.Reading`), or ``None``.
    """

    x: np.ndarray | None = None
    x_loc: np.ndarray | None = None
    image: Image.Image | None = None
    dct_scale: int = 1
    size: tuple[int, int] | None = None
    box: list[int] | None = None
    aircraft: float | None = None
    cam: np.ndarray | None = None
    source: object = None
    reading: rd.Reading | None = None


class Pipeline:
    """The inference pipeline of one loaded model version (:class:`model.cascade.Cascade`).

    Args:
        cascade: the loaded version.
        registry: the aircraft registry (:func:`model.registry.load_configured`); ``None``:
            registrations are not read (:attr:`reads` is False).
    """

    def __init__(self, cascade: Cascade, registry: Registry | None = None):
        self.cascade = cascade
        self.registry = registry
        self.reader = rd.RegistrationReader(registry) if registry is not None else None

    @classmethod
    def load(cls, path: str | os.PathLike, threshold: float | None = None,
             type_threshold: float | None = None, registry: Registry | None = None) -> "Pipeline":
        """The pipeline of the version folder ``path`` (:meth:`Cascade.load`; same arguments and
        errors), reading registrations against ``registry`` when one is given."""
        return cls(Cascade.load(path, threshold=threshold, type_threshold=type_threshold), registry)

    @property
    def reads(self) -> bool:
        """Registrations can be read (a registry is loaded)."""
        return self.reader is not None

    # ---------------------------------------------------------------- what the version does

    @property
    def version(self) -> str:
        return self.cascade.version

    @property
    def spec(self) -> pp.PreprocessingSpec:
        return self.cascade.spec

    @property
    def has_localizer(self) -> bool:
        return self.cascade.localizer is not None

    @property
    def two_phase(self) -> bool:
        """The classifier's input waits for the localizer: the version has a localizer *and* a
        crop rule (``spec.crop``). A localizer that only gates (the default) runs in
        :meth:`forward`, on the same batch as the classifier."""
        return self.has_localizer and self.cascade.crop_rule is not None

    @property
    def stages(self) -> list[str]:
        """The stages this version runs, in order: ``decode``, ``gate`` (the "not an aircraft"
        localizer), ``crop`` (cut to the aircraft's box), ``classify`` (stage 1 and stage 2),
        ``tta:<kind>`` (test-time augmentation, e.g. ``tta:flip``), ``novelty`` (unusual photos
        are unsure: :mod:`model.confidence`), ``views`` (the mirror image and a zoomed crop must
        agree), ``read`` (the registration reader, on request, when a registry is loaded)."""
        out = ["decode"]
        if self.has_localizer:
            out.append("gate")
        if self.two_phase:
            out.append("crop")
        out.append("classify")
        if self.cascade.tta:
            out.append(f"tta:{self.cascade.tta}")
        if self.cascade.novelty:
            out.append("novelty")
        if self.cascade.views:
            out.append("views")
        if self.reads:
            out.append("read")
        return out

    def warm_up(self, batch_sizes=(1,)) -> None:
        """Run every model once per batch size (:meth:`Cascade.warm_up`)."""
        self.cascade.warm_up(batch_sizes=batch_sizes)

    # ---------------------------------------------------------------- per image (CPU)

    def prepare(self, source, read: bool = False) -> Inputs:
        """The per-image CPU work: decode once (a large JPEG at a reduced DCT scale when the spec's
        ``jpeg_draft`` asks, EXIF orientation applied), the localizer's input from the whole
        image, and, unless the version crops, the classifier's input.

        Args:
            source: encoded bytes, a path, or an already decoded ``PIL.Image.Image`` (full size).
            read: keep the upload for :meth:`read` (ignored when :attr:`reads` is False).
        Returns:
            :class:`Inputs` (``x`` is ``None`` for a two-phase version until :meth:`crop`).
        Raises:
            model.preprocessing.ImageDecodeError: not a readable JPEG/PNG/WebP image (``code``
                says why). ValueError: a malformed image Pillow could not size. MemoryError.
        """
        inputs = self._prepare(source)
        if read and self.reads:
            inputs.source = source
        return inputs

    def _prepare(self, source) -> Inputs:
        c = self.cascade
        if isinstance(source, Image.Image):
            img, s, size = source, 1, source.size
        elif c.localizer is None:
            return Inputs(x=pp.to_array(source, c.spec))
        else:
            img, s, size = loc.decode(source, c.spec)
        x_loc = loc.localizer_input(img, c.localizer_size, None, s) if c.localizer is not None else None
        if self.two_phase:
            return Inputs(x_loc=x_loc, image=img, dct_scale=s, size=size)
        return Inputs(x=self._classifier_input(img, None, s), x_loc=x_loc, dct_scale=s, size=size)

    def read(self, inputs: Inputs) -> Inputs:
        """Read the registration of an input prepared with ``read=True`` (after :meth:`crop` for a
        two-phase version, so the aircraft's box is known):
        :meth:`model.reader.RegistrationReader.read_upload` (the upload decoded again for
        reading) inside ``inputs.box`` or on the whole image. Sets ``inputs.reading`` (``None``: nothing the registry knows) and frees the
        upload. A no-op for inputs not asked to be read.

        Raises:
            model.preprocessing.ImageDecodeError: the upload cannot be decoded (it was, in
                :meth:`prepare`, so only a changed file on disk).
        """
        if inputs.source is None:
            return inputs
        src, inputs.source = inputs.source, None
        inputs.reading = self.reader.read_upload(src, inputs.box)
        return inputs

    def from_pixels(self, pixels: np.ndarray, box=None, aircraft: float | None = None) -> Inputs:
        """Inputs from uint8 pixels already cut and resized to ``spec.input_shape`` (a dataset's
        cached pixels: :func:`model.data.load_pixels`), with the box they were cut to and the
        localizer's aircraft probability when known (``None``: no gate)."""
        return Inputs(x=pp.scale(np.asarray(pixels), self.spec),
                      box=None if box is None else [int(v) for v in box], aircraft=aircraft)

    def crop(self, inputs: Inputs) -> Inputs:
        """After :meth:`locate`: the box from the activation map (:func:`model.localize.box_from_cam`
        with the spec's crop rule), and the classifier's input cut to it (or whole). Frees the
        decoded image. A no-op for inputs that already have ``x``."""
        if inputs.x is not None:
            return inputs
        rule = self.cascade.crop_rule
        box = loc.box_from_cam(inputs.cam, *inputs.size, rule) if rule is not None and inputs.cam is not None else None
        inputs.x = self._classifier_input(inputs.image, box, inputs.dct_scale)
        inputs.box = None if box is None else [int(v) for v in box]
        inputs.image = inputs.cam = None
        return inputs

    def _classifier_input(self, img: Image.Image, box, dct_scale: int) -> np.ndarray:
        """The classifier's float32 ``(H, W, 3)`` input of a decoded image cut to ``box`` (or whole)."""
        return pp.scale(pp.to_uint8(img, self.spec, box, dct_scale=dct_scale), self.spec)

    # ---------------------------------------------------------------- batched (forward passes)

    def locate(self, batch: list[Inputs]) -> None:
        """The localizer's forward pass over whole images (``x_loc``): sets each input's
        ``aircraft`` and ``cam``. Raises RuntimeError: the version has no localizer."""
        if not self.has_localizer:
            raise RuntimeError(f"model version {self.version} has no localizer")
        aircraft, cams = loc.run(self.cascade.localizer, np.stack([b.x_loc for b in batch]))
        for b, a, cam in zip(batch, aircraft, cams):
            b.aircraft, b.cam = float(a), cam

    def forward(self, batch: list[Inputs], top_k: int = 3) -> list[dict]:
        """The answers of a batch of prepared (and, two-phase, cropped) inputs.

        The gate first: the localizer on the inputs whose aircraft probability is not known yet
        (a version whose localizer only gates); then :meth:`Cascade.predict` (stage 1, stage 2,
        TTA, routing, the answer) on the classifier inputs, with each input's box and aircraft
        probability.

        Returns:
            One answer dict per input (:meth:`Cascade.predict`), each joined to its registration
            reading by :func:`model.reader.fuse` (``registration`` ``None`` when not read or not
            found; ``answer["source"]`` ``"image"`` or ``"registration"``).
        """
        if not batch:
            return []
        gated = [b for b in batch if b.aircraft is None and b.x_loc is not None]
        if gated and self.has_localizer:
            aircraft, _ = loc.run(self.cascade.localizer, np.stack([b.x_loc for b in gated]))
            for b, a in zip(gated, aircraft):
                b.aircraft = float(a)
        air = [b.aircraft for b in batch]
        answers = self.cascade.predict(np.stack([b.x for b in batch]), top_k=top_k, boxes=[b.box for b in batch],
                                       aircraft=None if any(a is None for a in air) else np.asarray(air, np.float64))
        return [rd.fuse(a, b.reading) for a, b in zip(answers, batch)]

    def run(self, batch: list[Inputs], top_k: int = 3) -> list[dict]:
        """:meth:`locate` and :meth:`crop` when the version is two-phase, :meth:`read` for the
        inputs asked to be read, then :meth:`forward`."""
        if self.two_phase and batch:
            todo = [b for b in batch if b.x is None]
            if todo:
                self.locate(todo)
                for b in todo:
                    self.crop(b)
        for b in batch:
            self.read(b)
        return self.forward(batch, top_k=top_k)

    def predict(self, sources, top_k: int = 3, read: bool = False) -> list[dict]:
        """Answer encoded images, paths or decoded images, all in one batch (:meth:`prepare`
        each, reading registrations when ``read``, then :meth:`run`). Raises ``ImageDecodeError``
        on a bad image."""
        return self.run([self.prepare(s, read=read) for s in sources], top_k=top_k)


def as_pipeline(model: "Pipeline | Cascade") -> Pipeline:
    """``model`` itself when it is a :class:`Pipeline`, else the pipeline of the loaded
    :class:`~model.cascade.Cascade` (callers that hold a cascade, e.g. training's evaluation)."""
    return model if isinstance(model, Pipeline) else Pipeline(model)

