"""The one definition of image preprocessing, shared by training, serving, batch scoring and R.

Every path that turns an image file into a model input goes through :func:`decode_image` and
:func:`to_array` with a :class:`PreprocessingSpec`. The spec is saved beside each model version as
``preprocessing.json`` together with the sha256 of the preprocessed tensor of a reference image
(:func:`reference_checksum`), so a server or the R side can prove it preprocesses identically.

Resizing is Pillow's, as ``keras.utils.load_img`` (and so R keras' ``image_load``) does it: the
R original called ``image_load(path, target_size = c(150, 150))`` (Pillow ``NEAREST``) and divided
by 255. TensorFlow's ``tf.image.resize`` picks different source pixels (../shared/notes/stack.md),
so it is never used on the serving path.
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


@dataclasses.dataclass(frozen=True)
class PreprocessingSpec:
    """How an image becomes a model input tensor.

    Attributes:
        height, width: output size in pixels (the model's input shape is ``(height, width, 3)``).
        resize: Pillow filter name, one of :data:`RESAMPLING` (``nearest`` is R keras' default).
        channel_order: always ``"RGB"``.
        scale, offset: ``x = pixel * scale + offset`` applied to uint8 pixels, giving float32.
            ``scale = 1/255, offset = 0`` gives [0, 1], the R original's ``/255``.
    """

    height: int = 128
    width: int = 128
    resize: str = "bilinear"
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    offset: float = 0.0

    def __post_init__(self):
        if self.resize not in RESAMPLING:
            raise ValueError(f"resize must be one of {sorted(RESAMPLING)}, got {self.resize!r}")
        if self.channel_order != "RGB":
            raise ValueError("only channel_order='RGB' is supported")
        if self.height < 8 or self.width < 8:
            raise ValueError("height and width must be at least 8 pixels")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``."""
        return (self.height, self.width, 3)

    def to_dict(self) -> dict:
        """The spec as a JSON-ready dict."""
        return dataclasses.asdict(self)

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
    """Open an encoded image and return it as an 8-bit RGB Pillow image.

    Only JPEG, PNG and WebP are opened (Pillow ``formats=`` allow-list). The EXIF orientation is
    applied; animated images give their first frame; grayscale, palette, RGBA (composited on
    white), CMYK and 16-bit images are converted to RGB.

    Args:
        source: the encoded bytes, or a path to a file.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageDecodeError: with ``code`` ``empty`` (zero bytes), ``unsupported_format``,
            ``truncated``, ``too_large`` (over :data:`MAX_IMAGE_PIXELS`) or ``unreadable``.
    """
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = Path(source).read_bytes()
    if not data:
        raise ImageDecodeError("empty", "the image is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageDecodeError(
                "too_large", f"image of {img.width}x{img.height} pixels exceeds {MAX_IMAGE_PIXELS}"
            )
        img.seek(0)
        img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError("too_large", f"image too large: {e}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            "unsupported_format", f"not a {'/'.join(ALLOWED_FORMATS)} image"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        code = "truncated" if "truncated" in msg.lower() or "broken data stream" in msg else "unreadable"
        raise ImageDecodeError(code, f"cannot decode image: {msg}") from None
    img = ImageOps.exif_transpose(img)
    return _to_rgb(img)


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
             crop_box: tuple[int, int, int, int] | str | None = None) -> np.ndarray:
    """Decode (if needed), crop (datasets' ``crop_box``, e.g. FGVC-Aircraft's credit banner; the
    API never crops) and resize an image.

    Returns:
        ``uint8`` array of shape ``(spec.height, spec.width, 3)``, RGB.

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a bad ``crop_box``.
    """
    img = source if isinstance(source, Image.Image) else decode_image(source)
    return np.asarray(resize(crop(img.convert("RGB"), crop_box), spec), dtype=np.uint8)


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
