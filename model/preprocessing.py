"""The one definition of image preprocessing, shared by training, serving, batch scoring and R.

Every path that turns an image file into a model input goes through :func:`decode_image` and
:func:`to_array` with a :class:`PreprocessingSpec`. The spec is saved beside each model version as
``preprocessing.json`` together with the sha256 of the preprocessed tensor of a reference image
(:func:`reference_checksum`), so a server or the R side can prove it preprocesses identically.

Resizing is Pillow's, as ``keras.utils.load_img`` (and so R keras' ``image_load``) does it: the
R original called ``image_load(path, target_size = c(150, 150))`` (Pillow ``NEAREST``) and divided
by 255. TensorFlow's ``tf.image.resize`` picks different source pixels (../shared/notes/stack.md),
so it is never used on the serving path.

Large JPEGs (camera files of 12-24 MP) can be decoded at 1/2, 1/4 or 1/8 of their size by
libjpeg itself (DCT-domain scaling, :func:`decode_scaled`) when the spec's ``jpeg_draft`` is set:
about 7x less decode time at 4000 px, and still at least ``jpeg_draft`` times the model input on
each side before the resize. Versions saved without the field decode at full size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Formats accepted anywhere in the project (Pillow format names).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

#: Pillow resampling filters by the names used in specs.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

#: Largest image accepted, in pixels (Pillow raises DecompressionBombError at 2x this).
MAX_IMAGE_PIXELS = 50_000_000

ImageSource = Union[bytes, bytearray, str, os.PathLike]


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image.

    ``code`` is a stable machine-readable reason: ``empty``, ``unsupported_format``,
    ``truncated``, ``too_large`` or ``unreadable``.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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


def decode_image(source: ImageSource) -> Image.Image:
    """Open an encoded image and return it as an 8-bit RGB Pillow image, at full size.

    Only JPEG, PNG and WebP are opened (Pillow ``formats=`` allow-list). The EXIF orientation is
    applied; animated images give their first frame; grayscale, palette, RGBA (composited on
    white), CMYK and 16-bit images are converted to RGB. (The model-input path,
    :func:`to_uint8`, decodes through :func:`decode_scaled` instead, which may read a JPEG at a
    reduced scale when the spec asks for it.)

    Args:
        source: the encoded bytes, or a path to a file.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageDecodeError: with ``code`` ``empty`` (zero bytes), ``unsupported_format``,
            ``truncated``, ``too_large`` (over :data:`MAX_IMAGE_PIXELS`) or ``unreadable``.
    """
    return decode_scaled(source)[0]


#: libjpeg's DCT-domain output scales that Pillow's ``JpegImageFile.draft`` can ask for, as
#: denominators (1/8, 1/4, 1/2; 1 is the full-size decode), largest reduction first.
DCT_SCALES: tuple[int, ...] = (8, 4, 2)

#: ``jpeg_draft`` of new trainings (``model.training.config.TrainConfig.spec``): the decoded JPEG keeps at
#: least twice the model input on each side, so the resize still averages 2x2 or more source
#: pixels per output pixel (accuracy before/after: README, "Real-size uploads").
DEFAULT_JPEG_DRAFT = 2


def jpeg_draft_scale(size: tuple[int, int], spec: "PreprocessingSpec") -> int:
    """The DCT scale denominator :func:`decode_scaled` decodes a JPEG at.

    Args:
        size: ``(width, height)`` in full-size pixels of the region the model will see (the
            whole EXIF-rotated image, or its ``crop_box``).
        spec: the preprocessing spec; ``spec.jpeg_draft`` is the factor ``k``.

    Returns:
        The largest ``s`` of :data:`DCT_SCALES` with ``width // s >= k * spec.width`` and
        ``height // s >= k * spec.height``; ``1`` (full size) when none fits or ``k == 0``.
        E.g. with ``k = 2`` and a 288x288 input: 4000x2667 -> 4 (1000x667), 6000x4000 -> 4,
        2000x1333 -> 2, 800x533 -> 1.
    """
    k = spec.jpeg_draft
    if not k:
        return 1
    w, h = size
    for s in DCT_SCALES:
        if w // s >= k * spec.width and h // s >= k * spec.height:
            return s
    return 1


class _DecodeErrors:
    """Context manager: Pillow's exceptions while opening/decoding become :class:`ImageDecodeError`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, e, tb):
        if exc_type is None or issubclass(exc_type, ImageDecodeError):
            return False
        if issubclass(exc_type, Image.DecompressionBombError):
            raise ImageDecodeError("too_large", f"image too large: {e}") from None
        if issubclass(exc_type, UnidentifiedImageError):
            raise ImageDecodeError("unsupported_format", f"not a {'/'.join(ALLOWED_FORMATS)} image") from None
        if issubclass(exc_type, (OSError, SyntaxError, ValueError)):
            msg = str(e)
            code = "truncated" if "truncated" in msg.lower() or "broken data stream" in msg else "unreadable"
            raise ImageDecodeError(code, f"cannot decode image: {msg}") from None
        return False


def _box(crop_box) -> tuple[int, int, int, int] | None:
    return parse_crop_box(crop_box) if isinstance(crop_box, str) or crop_box is None else tuple(crop_box)


def decode_scaled(source: ImageSource, spec: "PreprocessingSpec | None" = None,
                  crop_box: tuple[int, int, int, int] | str | None = None) -> tuple[Image.Image, int]:
    """:func:`decode_image`, reading a JPEG at a reduced DCT scale when ``spec.jpeg_draft`` asks.

    With ``spec.jpeg_draft = k >= 1`` and a JPEG (or MPO, a camera JPEG with a second picture),
    the decoder is told (Pillow ``draft``, before loading) to produce the image at 1/s of its
    size, ``s = jpeg_draft_scale(region, spec)``, region being ``crop_box``'s size or the whole
    image's, in the EXIF-rotated frame. libjpeg then skips most of the IDCT work: each output
    pixel covers an s x s block of the full-size image (the last row/column may cover less; the
    size is ``ceil(full / s)``). The pixel limit (:data:`MAX_IMAGE_PIXELS`) is checked on the
    full size. The EXIF orientation is applied after decoding, as in :func:`decode_image`.

    Args:
        source: the encoded bytes, or a path to a file.
        spec: the preprocessing spec; ``None`` or ``jpeg_draft = 0``: full size, as
            :func:`decode_image`.
        crop_box: the dataset's box (see :func:`parse_crop_box`), in full-size pixels of the
            EXIF-rotated image; only used to choose ``s`` (and checked against the full size).
            The image returned is not cropped.

    Returns:
        ``(image, s)``: a loaded RGB ``PIL.Image.Image`` and the scale denominator it was decoded
        at (1, 2, 4 or 8; 1 for PNG/WebP, small JPEGs and ``jpeg_draft = 0``).

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a malformed ``crop_box``, or one
            reaching outside the image (only checked here for drafted JPEGs; :func:`to_uint8`
            checks the others).
    """
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = Path(source).read_bytes()
    if not data:
        raise ImageDecodeError("empty", "the image is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with _DecodeErrors():
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageDecodeError(
                "too_large", f"image of {img.width}x{img.height} pixels exceeds {MAX_IMAGE_PIXELS}"
            )
        img.seek(0)
    s = 1
    if spec is not None and spec.jpeg_draft and img.format in ("JPEG", "MPO"):
        s = _draft(img, spec, crop_box)
    with _DecodeErrors():
        img.load()
    ImageOps.exif_transpose(img, in_place=True)  # the same pixels as the copying call, without the copy
    return _to_rgb(img), s


def _draft(img: Image.Image, spec: "PreprocessingSpec", crop_box) -> int:
    """Ask libjpeg for a reduced decode of the opened, not yet loaded JPEG ``img``; returns s."""
    w, h = img.size
    with _DecodeErrors():
        orientation = img.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    full = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the frame crop boxes are given in
    box = _box(crop_box)
    if box is not None and (box[2] > full[0] or box[3] > full[1]):
        raise ValueError(f"crop_box {box} reaches outside the {full[0]}x{full[1]} image")
    s = jpeg_draft_scale((box[2] - box[0], box[3] - box[1]) if box else full, spec)
    if s == 1:
        return 1
    # Pillow picks the largest of 8, 4, 2, 1 not above min(w // req_w, h // req_h): exactly s here.
    drafted = img.draft(None, (w // s, h // s))
    return 1 if not drafted else int(round(w / drafted[1][2]))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize(img: Image.Image, spec: PreprocessingSpec) -> Image.Image:
    """Resize an RGB image to ``(spec.width, spec.height)`` with Pillow's ``spec.resize`` filter."""
    if img.size == (spec.width, spec.height):
        return img
    return img.resize((spec.width, spec.height), RESAMPLING[spec.resize])


def parse_crop_box(text: str | None) -> tuple[int, int, int, int] | None:
    """The schema's ``crop_box`` (``"left top right bottom"``, integer pixels, Pillow box order:
    right/bottom exclusive) as a tuple; ``None`` for an empty value.

    Raises:
        ValueError: not four integers, or not ``0 <= left < right`` and ``0 <= top < bottom``.
    """
    if text is None or not str(text).strip():
        return None
    parts = str(text).replace(",", " ").split()
    try:
        box = tuple(int(v) for v in parts)
    except ValueError:
        raise ValueError(f"crop_box must be four integers 'left top right bottom', got {text!r}") from None
    if len(box) != 4 or not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
        raise ValueError(f"crop_box must be 'left top right bottom' with left < right and top < bottom, got {text!r}")
    return box  # type: ignore[return-value]


def crop(img: Image.Image, box: tuple[int, int, int, int] | str | None) -> Image.Image:
    """Cut ``img`` to ``box`` (see :func:`parse_crop_box`; ``None``/empty: unchanged). The box is in
    the decoded, EXIF-rotated frame that :func:`decode_image` returns.

    Raises:
        ValueError: a malformed box, or one reaching outside the image.
    """
    box = parse_crop_box(box) if isinstance(box, str) or box is None else tuple(box)
    if box is None:
        return img
    if box[2] > img.width or box[3] > img.height:
        raise ValueError(f"crop_box {box} reaches outside the {img.width}x{img.height} image")
    return img.crop(box)


def to_uint8(source: ImageSource | Image.Image, spec: PreprocessingSpec,
             crop_box: tuple[int, int, int, int] | str | None = None, dct_scale: int = 1) -> np.ndarray:
    """Decode (if needed), crop (datasets' ``crop_box``, e.g. FGVC-Aircraft's credit banner; the
    API never crops) and resize an image.

    Encoded sources are decoded by :func:`decode_scaled`, so a spec with ``jpeg_draft`` reads a
    large JPEG at 1/s of its size. ``crop_box`` is always in full-size pixels: on an image decoded
    at 1/s it becomes the fractional box ``crop_box / s`` of Pillow's ``resize(box=...)`` (crop
    and resize in one step); at full size it is cut with :func:`crop`, then resized, as before
    ``jpeg_draft`` existed.

    Args:
        source: encoded bytes or a path, or an already decoded Pillow image.
        spec: the preprocessing spec.
        crop_box: see :func:`parse_crop_box`; ``None``/empty: the whole image.
        dct_scale: only for a decoded ``source``: the ``s`` it was decoded at
            (:func:`decode_scaled`'s second value); 1 for a full-size image.

    Returns:
        ``uint8`` array of shape ``(spec.height, spec.width, 3)``, RGB.

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a bad ``crop_box``.
    """
    if isinstance(source, Image.Image):
        img, s = source, int(dct_scale)
    else:
        img, s = decode_scaled(source, spec, crop_box)
    img = img if img.mode == "RGB" else img.convert("RGB")
    box = _box(crop_box)
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
