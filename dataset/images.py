"""Image helpers for stored photos: metadata stripping, content hashes, perceptual hash.

Pure functions over bytes / Pillow images (and :func:`sha256_file` over a file); used by the
crawl pipelines, the importers, the renders and composites, and ``model.io``'s manifests.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps

#: JPEG APPn payload prefixes that carry location or other personal metadata.
_EXIF_PREFIX = b"Exif\x00\x00"
_XMP_PREFIXES = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")

JPEG_QUALITY = 95
"""Quality for the few images that must be re-encoded (non-JPEG input, EXIF rotation)."""


class ImageFormatError(ValueError):
    """The bytes are not a well-formed image of a supported kind."""


def _jpeg_segments(data: bytes):
    """Yield ``(marker, start, end)`` for the JPEG marker segments before SOS.

    Raises :class:`ImageFormatError` on a malformed header. Source: ITU-T T.81 (JPEG)
    Annex B — markers ``FFxx`` followed by a big-endian 2-byte length that includes
    itself; SOI/EOI/RSTn have no length.
    """
    if data[:2] != b"\xff\xd8":
        raise ImageFormatError("not a JPEG (no SOI marker)")
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ImageFormatError(f"JPEG marker expected at byte {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise ImageFormatError("truncated JPEG header")
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if i + 2 > n:
            raise ImageFormatError("truncated JPEG header")
        (length,) = struct.unpack(">H", data[i:i + 2])
        start, end = i - 2, i + length
        if length < 2 or end > n:
            raise ImageFormatError("truncated JPEG segment")
        yield marker, start, end
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        i = end


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Remove EXIF (incl. GPS) and XMP APP1 segments from JPEG bytes, losslessly.

    The pixels (entropy-coded data), quantisation tables, ICC profile (APP2) and JFIF
    header are kept byte for byte. Returns new bytes; raises :class:`ImageFormatError`
    when ``data`` is not a JPEG.
    """
    out = bytearray(b"\xff\xd8")
    pos = 2
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xE1:
            payload = data[start + 4:end]
            if payload.startswith(_EXIF_PREFIX) or payload.startswith(_XMP_PREFIXES):
                out += data[pos:start]
                pos = end
                continue
        if marker == 0xDA:
            break
    out += data[pos:]
    return bytes(out)


def has_gps(data: bytes) -> bool:
    """True when the image's EXIF has a non-empty GPS IFD (tag 0x8825)."""
    with Image.open(io.BytesIO(data)) as im:
        exif = im.getexif()
        return bool(exif.get_ifd(0x8825)) if 0x8825 in exif else False


def store_bytes(data: bytes) -> tuple[bytes, Image.Image]:
    """The bytes to store for a downloaded image, and the decoded image.

    JPEG with EXIF orientation 1 (or none): :func:`strip_jpeg_metadata` (lossless).
    Other JPEGs (rotated by EXIF) and other formats: decoded, transposed per EXIF,
    converted to RGB and re-encoded as JPEG at :data:`JPEG_QUALITY` without metadata.
    The image is fully decoded, so truncated data raises ``OSError``; not an image →
    ``PIL.UnidentifiedImageError``.
    """
    im = Image.open(io.BytesIO(data))
    im.load()
    orientation = im.getexif().get(0x0112, 1)
    if im.format == "JPEG" and orientation in (1, None) and im.mode in ("RGB", "L"):
        return strip_jpeg_metadata(data), im
    im = ImageOps.exif_transpose(im).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), im


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (64 lowercase hex digits)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (64 lowercase hex digits; read in 1 MiB chunks).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT32 = _dct_matrix(32)


def phash(image: Image.Image) -> str:
    """64-bit perceptual hash (pHash) as 16 lowercase hex digits.

    Algorithm (Zauner 2010, "Implementation and Benchmarking of Perceptual Image Hash
    Functions"; the same steps as the ``imagehash`` package's ``phash``): greyscale,
    resize to 32x32 (Lanczos), 2-D DCT-II (unnormalised, scipy's definition), keep the
    8x8 lowest frequencies, bit = coefficient > their median, bits row-major, MSB first.
    """
    g = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = _DCT32 @ g @ _DCT32.T
    low = dct[:8, :8]
    bits = (low > np.median(low)).flatten()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits of two hex hashes of equal length (0..64 for pHash)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
