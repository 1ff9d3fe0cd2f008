"""Image helpers: lossless metadata stripping, pHash, storage of downloaded bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from loopback_site import SMOKE_DIR, _gps_exif, _jpeg, smoke_image
from PIL import Image, ImageOps

from dataset.images import (
    ImageFormatError, hamming, has_gps, phash, sha256_file, sha256_hex, store_bytes, strip_jpeg_metadata,
)

if not SMOKE_DIR.is_dir():  # pragma: no cover
    pytest.skip("../shared/data is not available", allow_module_level=True)


@pytest.fixture(scope="module")
def photo():
    return smoke_image("boeing_777_turkish.jpg")


def test_strip_removes_gps_keeps_pixels(photo):
    data = _jpeg(photo, 400, exif=_gps_exif())
    assert has_gps(data)
    stripped = strip_jpeg_metadata(data)
    assert not has_gps(stripped) and len(stripped) < len(data)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(Image.open(io.BytesIO(stripped))))
    assert strip_jpeg_metadata(stripped) == stripped


def test_strip_rejects_non_jpeg():
    with pytest.raises(ImageFormatError):
        strip_jpeg_metadata(b"\x89PNG\r\n")


def test_store_bytes_truncated_raises(photo):
    data = _jpeg(photo, 400)
    with pytest.raises(OSError):
        store_bytes(data[: len(data) // 2])


def test_store_bytes_png_and_rotated_reencoded(photo):
    buf = io.BytesIO()
    photo.resize((300, 200)).save(buf, "PNG")
    out, im = store_bytes(buf.getvalue())
    assert out[:2] == b"\xff\xd8" and im.size == (300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    photo.resize((300, 200)).save(buf, "JPEG", exif=exif.tobytes())
    out, im = store_bytes(buf.getvalue())
    assert Image.open(io.BytesIO(out)).size == (200, 300)
    assert 0x0112 not in Image.open(io.BytesIO(out)).getexif()


def test_phash_robust_to_resize_and_sensitive_to_content(photo):
    a = Image.open(io.BytesIO(_jpeg(photo, 640)))
    b = Image.open(io.BytesIO(_jpeg(photo, 300, quality=50)))
    other = smoke_image("airbus_a380_emirates.jpg")
    assert len(phash(a)) == 16
    assert hamming(phash(a), phash(b)) <= 6
    assert hamming(phash(a), phash(other)) > 12
    assert hamming(phash(a), phash(ImageOps.mirror(a))) > 12


def test_sha256_hex():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_file_equals_sha256_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB: more than one 1 MiB chunk
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert sha256_file(p) == sha256_hex(data) == sha256_file(str(p))
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == sha256_hex(b"")
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")


def test_smoke_photos_available():
    assert len(list(SMOKE_DIR.glob("*.jpg"))) == 12
