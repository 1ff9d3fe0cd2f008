"""Where is the aircraft, and is there one? The pretrained backbone's own ImageNet head, on the
whole photo, before the cascade looks at a crop around the aircraft.

The *localizer* is EfficientNet-Lite0 with its ImageNet classifier (1000 classes), run once on
the whole image at ``size`` px (224, the size its weights were trained at). It gives two things
from one forward pass:

- ``aircraft``: the summed softmax probability of ImageNet's aircraft classes
  (:data:`AIRCRAFT_CLASSES`: airliner 404, airship 405, space shuttle 812, warplane 895, wing
  908). Below the version's ``aircraft_threshold`` the answer is "not an aircraft"
  (:class:`model.cascade.Cascade`).
- ``cam``: the class activation map (Zhou et al. 2016, "Learning Deep Features for
  Discriminative Localization", CVPR) of the aircraft classes: the ImageNet head is
  ``Dense(GlobalAveragePooling(f))``, so ``f(y, x) . w_c + b_c`` at every cell of the last feature
  map ``f`` (7x7 at 224 px) is class ``c``'s logit before pooling. The map summed over
  :data:`CAM_CLASSES` shows where the aircraft is.

:func:`box_from_cam` turns the map into a crop box with the CAM paper's rule (the bounding box of
the largest connected region above 20 % of the map's maximum), widened by a margin, kept to a
sane aspect ratio and size, and dropped (no crop) when the aircraft already fills the frame. The
rule's settings live in the preprocessing spec (``PreprocessingSpec.crop``), so training,
serving, ``make score`` and the R side crop alike (:func:`model.preprocessing.to_uint8`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from . import preprocessing as pp
from .backbones import get
from .io import write_npy
from .preprocessing import CAM_CLASSES, CropRule

#: ImageNet-1k classes that show an aircraft (index: WordNet name), summed into ``aircraft``.
AIRCRAFT_CLASSES: dict[int, str] = {404: "airliner", 405: "airship",
                                    895: "warplane, military plane", 908: "wing"}


def localizer_input(img: Image.Image, size: int = 224, box=None, dct_scale: int = 1) -> np.ndarray:
    """The localizer's input for one decoded RGB image.

    Args:
        img: as :func:`decode` returns it (maybe decoded at 1/``dct_scale`` of its size).
        size: the localizer's input side (pixels).
        box: the region the model looks at (a dataset ``crop_box``, e.g. FGVC's banner cut), in
            full-size pixels; ``None``: the whole image.
        dct_scale: the scale ``img`` was decoded at (:func:`model.preprocessing.decode_for_spec`).
    Returns:
        float32 ``(size, size, 3)`` in [0, 1]: the region resized whole (Pillow bilinear), ``/ 255``.
    """
    img = img if img.mode == "RGB" else img.convert("RGB")
    b = None
    if box is not None:

        b = pp.parse_crop_box(box) if isinstance(box, str) else tuple(box)
    if b is None:
        small = img.resize((size, size), Image.Resampling.BILINEAR)
    elif int(dct_scale) == 1:  # as model.preprocessing.to_uint8: cut, then resize
        small = img.crop(b).resize((size, size), Image.Resampling.BILINEAR)
    else:  # decoded at 1/s: the fractional box of Pillow's resize, as to_uint8 does
        s = int(dct_scale)
        region = (b[0] / s, b[1] / s, min(b[2] / s, img.width), min(b[3] / s, img.height))
        small = img.resize((size, size), Image.Resampling.BILINEAR, box=region)
    return np.asarray(small, np.float32) / np.float32(255.0)


def full_size(source) -> tuple[int, int]:
    """``(width, height)`` of an encoded image (bytes or path) at full size, EXIF orientation
    applied, from its header alone."""
    f = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    return image_size(f)


def decode(source, spec, crop_box=None) -> tuple[Image.Image, int, tuple[int, int]]:
    """Decode an image once for the localizer and the crop (the two-phase path: serving,
    ``make score``, training's localizer pass, R).

    The JPEG draft scale is chosen for the region the model looks at (the dataset ``crop_box``
    or the whole image; :func:`model.preprocessing.decode_for_spec`), the same for the localizer's
    input and for the crop, so every path cuts the same pixels.

    Returns:
        ``(image, dct_scale, (width, height))``: the decoded RGB image, the scale it was decoded
        at (1, 2, 4 or 8), and the image's full size (boxes are given in those pixels).
    Raises:
        ImageDecodeError: see :func:`model.preprocessing.decode_image`. ValueError: a bad crop box.
    """

    img, s = pp.decode_for_spec(source, spec, crop_box)
    return img, s, (img.size if s == 1 else full_size(source))


def build_localizer(size: int = 224, weights: str | None = None, backbone: str = "lite0",
                    cam_classes=CAM_CLASSES, aircraft_classes=tuple(AIRCRAFT_CLASSES)):
    """The localizer as a ``keras.Model`` of standard layers (R loads it through reticulate).

    Args:
        size: input pixels (square). weights: the backbone's weights (``None``: ImageNet,
            converted offline by ``make backbones``; ``"none"``: random, for tests).
    Returns:
        ``keras.Model``: float32 ``(n, size, size, 3)`` in [0, 1] → ``{"aircraft": (n,) float32
        in [0, 1], "cam": (n, size/32, size/32) float32 logits}``.
    Raises:
        WeightsUnavailableError: ImageNet weights not available offline.
    """
    import keras  # deferred: TensorFlow start-up, only when a localizer is built (training)
    from keras import layers  # deferred: as keras

    from .backbones.efficientnet_lite import network as L  # deferred: imports keras

    resolved = get(backbone).resolve_weights(weights)
    full = L.build_efficientnet_lite(backbone, (size, size, 3), include_top=True, weights=resolved,
                                     include_preprocessing=True, input_max=1.0)
    full.trainable = False
    maps = full.get_layer("top_activation").output
    kernel, bias = full.get_layer("predictions").get_weights()
    cam_dense = layers.Dense(1, name="cam_logits")
    cam_dense.build((None, kernel.shape[0]))
    cols = list(cam_classes)
    cam_dense.set_weights([kernel[:, cols].sum(axis=1, keepdims=True), bias[cols].sum(keepdims=True)])
    cam = layers.Reshape(tuple(maps.shape[1:3]), name="cam")(cam_dense(maps))
    probs = layers.Softmax(name="imagenet_probabilities")(full.output)
    sel = np.zeros((1000, 1), np.float32)
    sel[list(aircraft_classes)] = 1.0
    pick = layers.Dense(1, use_bias=False, name="aircraft_sum")
    pick.build((None, 1000))
    pick.set_weights([sel])
    aircraft = layers.Reshape((), name="aircraft")(pick(probs))
    model = keras.Model(full.input, {"aircraft": aircraft, "cam": cam}, name="localizer")
    model.trainable = False
    return model


def run(localizer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: ``x`` float32 ``(n, S, S, 3)`` → ``(aircraft (n,), cam (n, h, w))`` float64."""
    out = localizer.predict_on_batch(np.asarray(x, np.float32))
    return np.asarray(out["aircraft"], np.float64).reshape(-1), np.asarray(out["cam"], np.float64)


def box_from_cam(cam: np.ndarray, width: int, height: int, rule: CropRule) -> tuple[int, int, int, int] | None:
    """A crop box around the aircraft from its activation map.

    Args:
        cam: float ``(h, w)`` map over the whole image (any scale; logits).
        width, height: the image's size in pixels (the frame the box is in).
        rule: :class:`CropRule`.
    Returns:
        ``(left, top, right, bottom)`` integer pixels (Pillow box order, right/bottom exclusive,
        ``0 <= left < right <= width``), or ``None`` when there is nothing to crop: a flat or
        negative map, or a box covering at least ``rule.skip_area`` of the image.
    """
    cam = np.maximum(np.asarray(cam, np.float64), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(peak) or peak <= 0.0:
        return None
    up = ndimage.zoom(cam, (rule.grid / cam.shape[0], rule.grid / cam.shape[1]), order=1)
    mask = up >= rule.threshold * float(up.max())
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    mass = ndimage.sum(up, labels, index=np.arange(1, n + 1))
    rows, cols = np.nonzero(labels == int(np.argmax(mass)) + 1)
    sx, sy = width / up.shape[1], height / up.shape[0]
    x0, x1 = cols.min() * sx, (cols.max() + 1) * sx
    y0, y1 = rows.min() * sy, (rows.max() + 1) * sy
    bw, bh = x1 - x0, y1 - y0
    bw, bh = bw * (1 + 2 * rule.margin), bh * (1 + 2 * rule.margin)
    bw, bh = max(bw, rule.min_fraction * width), max(bh, rule.min_fraction * height)
    bw, bh = max(bw, bh / rule.max_aspect), max(bh, bw / rule.max_aspect)
    bw, bh = min(bw, width), min(bh, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - bw / 2, 0.0), width - bw)))
    top = int(round(min(max(cy - bh / 2, 0.0), height - bh)))
    right, bottom = min(width, left + int(round(bw))), min(height, top + int(round(bh)))
    if right <= left or bottom <= top or (right - left) * (bottom - top) >= rule.skip_area * width * height:
        return None
    return left, top, right, bottom


def compose(outer: tuple[int, int, int, int] | None, inner: tuple[int, int, int, int] | None):
    """A box ``inner`` given in the frame of the crop ``outer`` (both Pillow boxes or ``None``),
    expressed in the frame ``outer`` was cut from. Returns a box or ``None`` (no crop at all)."""
    if inner is None:
        return outer
    if outer is None:
        return inner
    return (outer[0] + inner[0], outer[1] + inner[1], outer[0] + inner[2], outer[1] + inner[3])


def box_text(box) -> str:
    """A box as the schema's ``crop_box`` text (``"left top right bottom"``; ``""`` for ``None``)."""
    return "" if box is None else " ".join(str(int(v)) for v in box)


def _weights_id(weights: str | None) -> str:
    return str(weights or "imagenet")


def dataset_locate(df, size: int = 224, weights: str | None = None, localizer=None,
                   cache_dir=None, batch_size: int = 64, spec=None) -> tuple[np.ndarray, np.ndarray]:
    """The localizer's outputs for every row of a dataset, cached by image sha256 and crop box.

    Each image is decoded with the one preprocessing (:func:`model.preprocessing.decode_image`),
    cut to its dataset ``crop_box`` (e.g. FGVC's banner), resized whole to ``size``
    (:func:`localizer_input`) and run through the localizer.

    Args:
        df: rows with ``abs_path``, ``sha256`` and ``crop_box``.
        localizer: a built localizer (default: :func:`build_localizer` ``(size, weights)``, only
            built when some row is not cached).
        cache_dir: folder of the cache (default ``data/processed``); ``None`` keeps the default.
        spec: the classifier's preprocessing spec: its ``jpeg_draft`` (and size) decide the
            decode scale (:func:`decode`), as in serving; ``None``: full-size decoding.
    Returns:
        ``(aircraft (n,) float32 in [0, 1], cam (n, h, w) float32)``.
    Raises:
        ImageDecodeError, ValueError: a bad image or crop box.
    """
    cache_dir = Path(cache_dir or "data/processed")
    draft = "" if spec is None or not getattr(spec, "jpeg_draft", 0) else f"|draft{spec.jpeg_draft}|{spec.width}x{spec.height}"
    key = hashlib.sha256(f"localizer|{size}|{_weights_id(weights)}|{CAM_CLASSES}|{tuple(AIRCRAFT_CLASSES)}{draft}"
                         .encode()).hexdigest()[:16]
    npy, index_path = cache_dir / f"localizer-{key}.npy", cache_dir / f"localizer-{key}.index.json"
    rows = [f"{s}|{b}" for s, b in zip(df["sha256"], df["crop_box"])]
    index: dict[str, int] = json.loads(index_path.read_text()) if index_path.is_file() and npy.is_file() else {}
    store = np.load(npy) if index else None
    missing = sorted({r for r in rows if r not in index})
    if missing:
        first = {r: i for i, r in reversed(list(enumerate(rows)))}
        todo = [first[r] for r in missing]
        paths, boxes = df["abs_path"].tolist(), df["crop_box"].tolist()
        localizer = localizer or build_localizer(size, weights)

        def load(i):
            if spec is None:
                return localizer_input(pp.crop(pp.decode_image(paths[i]), boxes[i] or None), size)
            img, s, _ = decode(paths[i], spec, boxes[i] or None)
            return localizer_input(img, size, boxes[i] or None, s)

        parts = []
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for s in range(0, len(todo), batch_size):
                x = np.stack(list(pool.map(load, todo[s:s + batch_size])))
                aircraft, cam = run(localizer, x)
                parts.append(np.concatenate([aircraft[:, None], cam.reshape(len(x), -1)], axis=1).astype(np.float32))
        new = np.concatenate(parts)
        base = 0 if store is None else len(store)
        store = new if store is None else np.concatenate([store, new])
        index.update({r: base + k for k, r in enumerate(missing)})
        write_npy(npy, store)
        tmp = index_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    out = store[[index[r] for r in rows]]
    side = int(round(np.sqrt(out.shape[1] - 1)))
    return out[:, 0], out[:, 1:].reshape(len(out), side, side)


def image_size(path) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`model.preprocessing.decode_image` returns it
    (EXIF orientation applied), from the header alone."""
    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def dataset_boxes(df, cams: np.ndarray, rule: CropRule | None) -> list[str]:
    """Each row's crop box for the classifier: the aircraft box inside its dataset ``crop_box``
    (:func:`box_from_cam` on the dataset-cropped image, then :func:`compose`), as ``crop_box``
    text (``""``: the whole image). Without a rule the dataset boxes are returned unchanged."""

    if rule is None:
        return df["crop_box"].tolist()
    out = []
    for path, text, cam in zip(df["abs_path"], df["crop_box"], cams):
        outer = pp.parse_crop_box(text or None)
        fw, fh = (outer[2] - outer[0], outer[3] - outer[1]) if outer is not None else image_size(path)
        out.append(box_text(compose(outer, box_from_cam(cam, fw, fh, rule))))
    return out


#: Share of validation aircraft photos the gate may call "not an aircraft" at most.
GATE_MAX_REJECT = 0.005


def choose_aircraft_threshold(localizer, aircraft: np.ndarray, size: int = 224,
                              n_negatives: int = 64) -> tuple[float, dict]:
    """The "not an aircraft" threshold on the localizer's aircraft probability, chosen at training
    on validation images: the aircraft probability of the validation aircraft photos (any maker;
    the caller passes every validation row's when there are no photos) and generated negatives
    (:func:`model.negatives.generated`, seed 1; the test negatives use other seeds and
    scikit-image's photos). The threshold is the geometric mean of the highest negative score and
    the :data:`GATE_MAX_REJECT` quantile of the aircraft scores (the latter alone when they overlap).

    Args:
        localizer: the Keras localizer (:func:`build_localizer`) of input side ``size`` pixels.
        aircraft: float ``(n,)`` aircraft probabilities of the validation aircraft images, n >= 1.
    Returns:
        ``(threshold, report)``; report: counts, the two anchors, validation rejection rates.
    """
    from . import negatives  # deferred: the serving side never chooses a threshold

    neg_imgs = [im for _, im in negatives.generated(n_negatives, seed=1)]
    neg, _ = run(localizer, np.stack([localizer_input(im, size) for im in neg_imgs]))
    q = float(np.quantile(aircraft, GATE_MAX_REJECT))
    top_neg = float(neg.max())
    t = float(np.sqrt(q * top_neg)) if top_neg < q else q
    return t, {"n_aircraft": int(len(aircraft)), "n_negatives": int(len(neg)), "aircraft_quantile": q,
               "max_negative": top_neg, "aircraft_rejected": float(np.mean(aircraft < t)),
               "negatives_accepted": float(np.mean(neg >= t))}
