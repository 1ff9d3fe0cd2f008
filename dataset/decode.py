"""The project's one image decoder: encoded bytes or a file → an 8-bit RGB Pillow image.

Every part that opens an image goes through :func:`decode_image` (or :func:`decode_scaled`):
training, serving and batch scoring (through :mod:`model.preprocessing`), the importers'
sizes and pHashes (``ingest``) and the composites' backgrounds (``synth``), so they all see the
same pixels in the same frame (EXIF orientation applied), which is the frame the schema's
``crop_box`` is given in (:func:`parse_crop_box`, :func:`crop`).

Large JPEGs (camera files of 12-24 MP) can be decoded at 1/2, 1/4 or 1/8 of their size by
libjpeg itself (DCT-domain scaling, :func:`decode_scaled` with a ``min_size``): about 7x less
decode time at 4000 px. The scale is the largest that keeps the region of interest at least
``min_size`` (:func:`draft_scale`); ``model.preprocessing`` derives ``min_size`` from its spec's
``jpeg_draft``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Formats accepted anywhere in the project (Pillow format names).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

#: Largest image accepted, in pixels (Pillow raises DecompressionBombError at 2x this).
MAX_IMAGE_PIXELS = 50_000_000

#: libjpeg's DCT-domain output scales that Pillow's ``JpegImageFile.draft`` can ask for, as
#: denominators (1/8, 1/4, 1/2; 1 is the full-size decode), largest reduction first.
DCT_SCALES: tuple[int, ...] = (8, 4, 2)

ImageSource = Union[bytes, bytearray, str, os.PathLike]

#: A crop box: ``(left, top, right, bottom)`` integer pixels, or the schema's text, or ``None``.
CropBox = Union[tuple[int, int, int, int], str, None]


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image.

    ``code`` is a stable machine-readable reason: ``empty``, ``unsupported_format``,
    ``truncated``, ``too_large`` or ``unreadable``.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def decode_image(source: ImageSource) -> Image.Image:
    """Open an encoded image and return it as an 8-bit RGB Pillow image, at full size.

    Only JPEG, PNG and WebP are opened (Pillow ``formats=`` allow-list). The EXIF orientation is
    applied; animated images give their first frame; grayscale, palette, RGBA (composited on
    white), CMYK and 16-bit images are converted to RGB. (The model-input path,
    ``model.preprocessing.to_uint8``, decodes through :func:`decode_scaled` instead, which may
    read a JPEG at a reduced scale when its spec asks for it.)

    Args:
        source: the encoded bytes, or a path to a file.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageDecodeError: with ``code`` ``empty`` (zero bytes), ``unsupported_format``,
            ``truncated``, ``too_large`` (over :data:`MAX_IMAGE_PIXELS`) or ``unreadable``.
        OSError: ``source`` is a path that cannot be read.
    """
    return decode_scaled(source)[0]


def draft_scale(size: tuple[int, int], min_size: tuple[int, int] | None) -> int:
    """The DCT scale denominator :func:`decode_scaled` decodes a JPEG at.

    Args:
        size: ``(width, height)`` in full-size pixels of the region that will be used (the
            whole EXIF-rotated image, or its ``crop_box``).
        min_size: ``(min_width, min_height)`` the decoded region must keep, in pixels; ``None``
            for the full-size decode.

    Returns:
        The largest ``s`` of :data:`DCT_SCALES` with ``width // s >= min_width`` and
        ``height // s >= min_height``; ``1`` (full size) when none fits or ``min_size`` is
        ``None``. E.g. with ``min_size = (576, 576)``: 4000x2667 -> 4 (1000x667), 6000x4000 -> 4,
        2000x1333 -> 2, 800x533 -> 1.
    """
    if min_size is None:
        return 1
    w, h = size
    min_w, min_h = min_size
    for s in DCT_SCALES:
        if w // s >= min_w and h // s >= min_h:
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


def as_box(crop_box: CropBox) -> tuple[int, int, int, int] | None:
    """A crop box as a tuple: text and ``None`` through :func:`parse_crop_box`, a sequence of
    four numbers as ``tuple(crop_box)`` (unchecked).

    Raises:
        ValueError: malformed text (see :func:`parse_crop_box`).
    """
    return parse_crop_box(crop_box) if isinstance(crop_box, str) or crop_box is None else tuple(crop_box)


def decode_scaled(source: ImageSource, min_size: tuple[int, int] | None = None,
                  crop_box: CropBox = None) -> tuple[Image.Image, int]:
    """:func:`decode_image`, reading a JPEG at a reduced DCT scale when ``min_size`` allows it.

    With a ``min_size`` and a JPEG (or MPO, a camera JPEG with a second picture), the decoder is
    told (Pillow ``draft``, before loading) to produce the image at 1/s of its size,
    ``s = draft_scale(region, min_size)``, region being ``crop_box``'s size or the whole image's,
    in the EXIF-rotated frame. libjpeg then skips most of the IDCT work: each output pixel covers
    an s x s block of the full-size image (the last row/column may cover less; the size is
    ``ceil(full / s)``). The pixel limit (:data:`MAX_IMAGE_PIXELS`) is checked on the full size.
    The EXIF orientation is applied after decoding, as in :func:`decode_image`.

    Args:
        source: the encoded bytes, or a path to a file.
        min_size: ``(min_width, min_height)`` in pixels that the region must keep after the
            scaled decode (see :func:`draft_scale`); ``None``: full size, as :func:`decode_image`.
        crop_box: the dataset's box (see :func:`parse_crop_box`), in full-size pixels of the
            EXIF-rotated image; only used to choose ``s`` (and checked against the full size).
            The image returned is not cropped.

    Returns:
        ``(image, s)``: a loaded RGB ``PIL.Image.Image`` and the scale denominator it was decoded
        at (1, 2, 4 or 8; 1 for PNG/WebP, small JPEGs and ``min_size = None``).

    Raises:
        ImageDecodeError: see :func:`decode_image`. ValueError: a malformed ``crop_box``, or one
            reaching outside the image (only checked here for drafted JPEGs; :func:`crop` checks
            the others). OSError: ``source`` is a path that cannot be read.
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
    if min_size is not None and img.format in ("JPEG", "MPO"):
        s = _draft(img, min_size, crop_box)
    with _DecodeErrors():
        img.load()
    ImageOps.exif_transpose(img, in_place=True)  # the same pixels as the copying call, without the copy
    return _to_rgb(img), s


def _draft(img: Image.Image, min_size: tuple[int, int], crop_box: CropBox) -> int:
    """Ask libjpeg for a reduced decode of the opened, not yet loaded JPEG ``img``; returns s."""
    w, h = img.size
    with _DecodeErrors():
        orientation = img.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    full = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the frame crop boxes are given in
    box = as_box(crop_box)
    if box is not None and (box[2] > full[0] or box[3] > full[1]):
        raise ValueError(f"crop_box {box} reaches outside the {full[0]}x{full[1]} image")
    s = draft_scale((box[2] - box[0], box[3] - box[1]) if box else full, min_size)
    if s == 1:
        return 1
    # Pillow picks the largest of 8, 4, 2, 1 not above min(w // req_w, h // req_h): exactly s here.
    drafted = img.draft(None, (w // s, h // s))
    return 1 if not drafted else int(round(w / drafted[1][2]))


def _to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an 8-bit RGB image: 16-bit/32-bit grey scaled to 8 bits, palette and alpha
    images composited on white, every other mode through Pillow's ``convert("RGB")``."""
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


def crop(img: Image.Image, box: CropBox) -> Image.Image:
    """Cut ``img`` to ``box`` (see :func:`parse_crop_box`; ``None``/empty: unchanged). The box is in
    the decoded, EXIF-rotated frame that :func:`decode_image` returns.

    Raises:
        ValueError: a malformed box, or one reaching outside the image.
    """
    box = as_box(box)
    if box is None:
        return img
    if box[2] > img.width or box[3] > img.height:
        raise ValueError(f"crop_box {box} reaches outside the {img.width}x{img.height} image")
    return img.crop(box)
