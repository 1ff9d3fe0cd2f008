"""The one definition of image preprocessing, shared by training, serving, batch scoring and R.

Every path that turns an image file into a model input goes through the project's one decoder
(:mod:`dataset.decode`) and :func:`to_array` with a :class:`PreprocessingSpec`. The spec is saved beside each model version as
``preprocessing.json`` together with the sha256 of the preprocessed tensor of a reference image
(:func:`reference_checksum`), so a server or the R side can prove it preprocesses identically.

Resizing is Pillow's, as ``keras.utils.load_img`` (and so R keras' ``image_load``) does it: the
R original called ``image_load(path, target_size = c(150, 150))`` (Pillow ``NEAREST``) and divided
by 255. TensorFlow's ``tf.image.resize`` picks different source pixels (../shared/notes/stack.md),
so it is never used on the serving path.

Large JPEGs (camera files of 12-24 MP) can be decoded at 1/2, 1/4 or 1/8 of their size by
libjpeg itself (DCT-domain scaling, :func:`decode_for_spec`) when the spec's ``jpeg_draft`` is set:
about 7x less decode time at 4000 px, and still at least ``jpeg_draft`` times the model input on
each side before the resize. Versions saved without the field decode at full size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
from PIL import Image

from dataset import decode
# The decoder's names that model/ and api/ code uses through this module (pp.ImageDecodeError, ...).
from dataset.decode import (  # noqa: F401
    MAX_IMAGE_PIXELS, ImageDecodeError, ImageSource, as_box, crop, decode_image, draft_scale, parse_crop_box,
)

#: Pillow resampling filters by the names used in specs.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

#: Classes whose activation maps are summed into the localisation map (fixed-wing aircraft).
CAM_CLASSES: tuple[int, ...] = (404, 895, 908)


@dataclasses.dataclass(frozen=True)
class CropRule:
    """How a class activation map becomes a crop box (``PreprocessingSpec.crop`` as a dict; the map
    and the box are :mod:`model.localize`'s).

    Attributes:
        size: localizer input, square pixels (the whole image resized to it, Pillow bilinear).
        threshold: share of the map's maximum a cell needs to belong to the aircraft (the CAM
            paper used 0.2; on this map, 7x7 at 224 px, 0.2 keeps 73 % of a photo's area, 0.35
            about 60 %: measured on 200 real photos).
        grid: the map is upsampled (bilinear, ``scipy.ndimage.zoom`` order 1) to ``grid x grid``
            before thresholding.
        margin: the box grows by this share of its width/height on every side.
        min_fraction: the box spans at least this share of the image's width and height.
        max_aspect: the box's long side / short side (in image pixels) is at most this; the
            short side grows to meet it.
        skip_area: a box covering at least this share of the image's area means "no crop".
    """

    size: int = 224
    threshold: float = 0.35
    grid: int = 56
    margin: float = 0.1
    min_fraction: float = 0.3
    max_aspect: float = 2.0
    skip_area: float = 0.8
    method: str = "cam"
    classes: tuple[int, ...] = dataclasses.field(default=CAM_CLASSES)

    def to_dict(self) -> dict:
        """JSON-ready dict (``classes`` as a list)."""
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "CropRule | None":
        """Inverse of :meth:`to_dict`; ``None`` stays ``None``. Raises ValueError on a bad method."""
        if d is None:
            return None
        d = dict(d)
        if d.get("method", "cam") != "cam":
            raise ValueError(f"unknown crop method {d.get('method')!r}")
        if "classes" in d:
            d["classes"] = tuple(int(c) for c in d["classes"])
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class PreprocessingSpec:
    """How an image becomes a model input tensor.

    Attributes:
        height, width: output size in pixels (the model's input shape is ``(height, width, 3)``).
        resize: Pillow filter name, one of :data:`RESAMPLING` (``nearest`` is R keras' default).
        channel_order: always ``"RGB"``.
        scale, offset: ``x = pixel * scale + offset`` applied to uint8 pixels, giving float32.
            ``scale = 1/255, offset = 0`` gives [0, 1], the R original's ``/255``.
        crop: ``None`` (the whole image, as before this field existed) or the aircraft crop
            rule as a dict (:class:`model.localize.CropRule`): the version's localizer finds the
            aircraft on the whole image and the model sees a box around it
            (:func:`model.localize.box_from_cam`). Omitted from :meth:`to_dict` when ``None``, so
            older specs keep their JSON and cache keys.
        jpeg_draft: scaled JPEG decoding (integer >= 0). ``0`` (the default, and what every version
            saved before this field existed gets from :meth:`from_dict`): JPEGs are decoded at full
            size. ``k >= 1``: a JPEG is decoded directly at 1/s of its size with libjpeg's
            DCT-domain scaling, s the largest of 8, 4 and 2 that keeps the region the model sees
            (the whole image, or its dataset ``crop_box``) at least ``k x width`` by
            ``k x height`` pixels, else at full size (:func:`jpeg_draft_scale`); then cropped and
            resized as usual. The scales are libjpeg's ``scale_num / scale_denom`` output scaling
            (libjpeg-turbo ``jdmaster.c`` ``jpeg_calc_output_dimensions``; Pillow's
            ``JpegImageFile.draft`` offers 1/1, 1/2, 1/4 and 1/8). New trainings use ``2``: a
            4000x2667 photo is decoded at 1000x667 for a 288-px model, some 7x faster than at
            full size. PNG and WebP are always decoded at full size. Omitted from :meth:`to_dict`
            when ``0``, so older specs keep their JSON and cache keys.
    """

    height: int = 128
    width: int = 128
    resize: str = "bilinear"
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    crop: dict | None = dataclasses.field(default=None, hash=False)
    jpeg_draft: int = 0

    def __post_init__(self):
        if self.resize not in RESAMPLING:
            raise ValueError(f"resize must be one of {sorted(RESAMPLING)}, got {self.resize!r}")
        if self.channel_order != "RGB":
            raise ValueError("only channel_order='RGB' is supported")
        if self.height < 8 or self.width < 8:
            raise ValueError("height and width must be at least 8 pixels")
        k = self.jpeg_draft
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not float(k).is_integer() or k < 0:
            raise ValueError(f"jpeg_draft must be an integer >= 0 (0: off), got {k!r}")
        object.__setattr__(self, "jpeg_draft", int(k))  # 2.0 from R or JSON -> 2

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``."""
        return (self.height, self.width, 3)

    def to_dict(self) -> dict:
        """The spec as a JSON-ready dict (optional fields left out while at their default)."""
        d = dataclasses.asdict(self)
        if d.get("crop") is None:
            d.pop("crop", None)
        if not d.get("jpeg_draft"):
            d.pop("jpeg_draft", None)
        return d

    @property
    def crop_rule(self) -> "CropRule | None":
        """:class:`CropRule` of :attr:`crop`, or ``None`` (no aircraft crop)."""
        return CropRule.from_dict(self.crop)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessingSpec":
        """Inverse of :meth:`to_dict`; unknown keys (e.g. ``reference_sha256``) are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def key(self) -> str:
        """A short stable digest of the spec, for cache keys."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


#: The R original's preprocessing: 150x150, Pillow nearest, /255.
R_ORIGINAL_SPEC = PreprocessingSpec(height=150, width=150, resize="nearest")


#: ``jpeg_draft`` of new trainings (``model.training.config.TrainConfig.spec``): the decoded JPEG keeps at
#: least twice the model input on each side, so the resize still averages 2x2 or more source
#: pixels per output pixel (accuracy before/after: README, "Real-size uploads").
DEFAULT_JPEG_DRAFT = 2


def draft_min_size(spec: "PreprocessingSpec") -> tuple[int, int] | None:
    """The decoded size a JPEG must keep under ``spec`` (:func:`dataset.decode.decode_scaled`'s
    ``min_size``): ``(k * spec.width, k * spec.height)`` with ``k = spec.jpeg_draft``, or ``None``
    (the full-size decode) when ``k == 0``."""
    k = spec.jpeg_draft
    return (k * spec.width, k * spec.height) if k else None


def jpeg_draft_scale(size: tuple[int, int], spec: "PreprocessingSpec") -> int:
    """The DCT scale denominator :func:`decode_for_spec` decodes a JPEG at.

    Args:
        size: ``(width, height)`` in full-size pixels of the region the model will see (the
            whole EXIF-rotated image, or its ``crop_box``).
        spec: the preprocessing spec; ``spec.jpeg_draft`` is the factor ``k``.

    Returns:
        The largest ``s`` of :data:`dataset.decode.DCT_SCALES` with ``width // s >= k * spec.width``
        and ``height // s >= k * spec.height``; ``1`` (full size) when none fits or ``k == 0``
        (:func:`dataset.decode.draft_scale` of :func:`draft_min_size`).
        E.g. with ``k = 2`` and a 288x288 input: 4000x2667 -> 4 (1000x667), 6000x4000 -> 4,
        2000x1333 -> 2, 800x533 -> 1.
    """
    return draft_scale(size, draft_min_size(spec))


def decode_for_spec(source: ImageSource, spec: "PreprocessingSpec | None" = None,
                    crop_box: tuple[int, int, int, int] | str | None = None) -> tuple[Image.Image, int]:
    """:func:`dataset.decode.decode_scaled` with the scale ``spec.jpeg_draft`` asks for.

    Args:
        source: the encoded bytes, or a path to a file.
        spec: the preprocessing spec; ``None`` or ``jpeg_draft = 0``: full size, as
            :func:`decode_image`.
        crop_box: the dataset's box in full-size pixels of the EXIF-rotated image; only used to
            choose the scale (:func:`jpeg_draft_scale` of its size). The image returned is not
            cropped.

    Returns:
        ``(image, s)``: a loaded RGB ``PIL.Image.Image`` and the scale denominator it was decoded
        at (1, 2, 4 or 8; 1 for PNG/WebP, small JPEGs and ``jpeg_draft = 0``).

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a malformed ``crop_box``, or one
            reaching outside the image (only checked here for drafted JPEGs; :func:`to_uint8`
            checks the others).
    """
    return decode.decode_scaled(source, None if spec is None else draft_min_size(spec), crop_box)


def resize(img: Image.Image, spec: PreprocessingSpec) -> Image.Image:
    """Resize an RGB image to ``(spec.width, spec.height)`` with Pillow's ``spec.resize`` filter."""
    if img.size == (spec.width, spec.height):
        return img
    return img.resize((spec.width, spec.height), RESAMPLING[spec.resize])


def to_uint8(source: ImageSource | Image.Image, spec: PreprocessingSpec,
             crop_box: tuple[int, int, int, int] | str | None = None, dct_scale: int = 1) -> np.ndarray:
    """Decode (if needed), crop (datasets' ``crop_box``, e.g. FGVC-Aircraft's credit banner; the
    API never crops) and resize an image.

    Encoded sources are decoded by :func:`decode_for_spec`, so a spec with ``jpeg_draft`` reads a
    large JPEG at 1/s of its size. ``crop_box`` is always in full-size pixels: on an image decoded
    at 1/s it becomes the fractional box ``crop_box / s`` of Pillow's ``resize(box=...)`` (crop
    and resize in one step); at full size it is cut with :func:`crop`, then resized, as before
    ``jpeg_draft`` existed.

    Args:
        source: encoded bytes or a path, or an already decoded Pillow image.
        spec: the preprocessing spec.
        crop_box: see :func:`parse_crop_box`; ``None``/empty: the whole image.
        dct_scale: only for a decoded ``source``: the ``s`` it was decoded at
            (:func:`decode_for_spec`'s second value); 1 for a full-size image.

    Returns:
        ``uint8`` array of shape ``(spec.height, spec.width, 3)``, RGB.

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a bad ``crop_box``.
    """
    if isinstance(source, Image.Image):
        img, s = source, int(dct_scale)
    else:
        img, s = decode_for_spec(source, spec, crop_box)
    img = img if img.mode == "RGB" else img.convert("RGB")
    box = as_box(crop_box)
    if s == 1 or box is None:
        return np.asarray(resize(crop(img, box), spec), dtype=np.uint8)
    if box[2] > img.width * s or box[3] > img.height * s:
        raise ValueError(f"crop_box {box} reaches outside the image (decoded at 1/{s}: {img.width}x{img.height})")
    scaled = (box[0] / s, box[1] / s, min(box[2] / s, img.width), min(box[3] / s, img.height))
    return np.asarray(img.resize((spec.width, spec.height), RESAMPLING[spec.resize], box=scaled), dtype=np.uint8)


def scale(pixels: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """Map uint8 pixels (any shape) to float32 model inputs: ``pixels * scale + offset``."""
    return pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)


def to_array(source: ImageSource | Image.Image, spec: PreprocessingSpec) -> np.ndarray:
    """The full preprocessing of one image.

    Returns:
        ``float32`` array of shape ``(spec.height, spec.width, 3)``; with the default scale the
        values lie in [0, 1].

    Raises:
        ImageDecodeError: see :func:`decode_image`.
    """
    return scale(to_uint8(source, spec), spec)


def reference_image() -> Image.Image:
    """A deterministic 317x211 RGB test card (gradients and a checkerboard), built in code.

    Used to checksum the preprocessing; odd sizes make every resize filter matter.
    """
    h, w = 211, 317
    yy, xx = np.mgrid[0:h, 0:w]
    r = (xx * 255 // (w - 1)).astype(np.uint8)
    g = (yy * 255 // (h - 1)).astype(np.uint8)
    b = (((xx // 7 + yy // 5) % 2) * 200 + 27).astype(np.uint8)
    return Image.fromarray(np.stack([r, g, b], axis=-1), "RGB")


def reference_png() -> bytes:
    """:func:`reference_image` encoded as PNG (lossless: decoding it gives the very same
    pixels, so ``tensor_checksum(reference_png(), spec) == reference_checksum(spec)``).

    Each model version stores these bytes as ``reference.png`` (:mod:`model.io`); ``GET /names``
    classifies it when no default image is configured.
    """
    buf = io.BytesIO()
    reference_image().save(buf, "PNG")
    return buf.getvalue()


def tensor_checksum(source: ImageSource | Image.Image, spec: PreprocessingSpec) -> str:
    """sha256 (hex) of the float32 little-endian bytes of ``to_array(source, spec)``.

    Raises:
        ImageDecodeError: see :func:`decode_image`.
    """
    arr = to_array(source, spec).astype("<f4")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def reference_checksum(spec: PreprocessingSpec) -> str:
    """sha256 (hex) of the float32 little-endian bytes of ``to_array(reference_image(), spec)``."""
    return tensor_checksum(reference_image(), spec)
