"""The one image decoder (dataset.decode), without any model spec: formats and error codes, EXIF
orientation, mode conversion, the DCT scale rule of ``min_size``, crop boxes.

Images are generated here (gradients, stripes and mild noise, so that JPEG keeps them detailed).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dataset.decode import (
    ALLOWED_FORMATS, DCT_SCALES, MAX_IMAGE_PIXELS, ImageDecodeError, crop, decode_image, decode_scaled, draft_scale,
    parse_crop_box,
)


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB picture, uint8 ``(h, w, 3)`` (a dark top-left block shows any rotation)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * xx / (w - 1), 255 * yy / (h - 1), 127 + 100 * np.sin((xx + 2 * yy) / max(w, h) * 40)], -1)
    img[: h // 3, : w // 4] *= 0.2
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: Image.Image | np.ndarray, fmt: str = "JPEG", orientation: int | None = None, **kw) -> bytes:
    img = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def mad(a, b) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


# ---------------------------------------------------------------- the scale rule

@pytest.mark.parametrize("size, min_size, expected", [
    ((4000, 2667), (576, 576), 4), ((6000, 4000), (576, 576), 4), ((2000, 1333), (576, 576), 2),
    ((800, 533), (576, 576), 1), ((1152, 1152), (576, 576), 2), ((4000, 2667), (288, 288), 8),
    ((4000, 2667), (2000, 100), 2), ((4000, 2667), (100, 2667), 1), ((4000, 2667), None, 1),
])
def test_draft_scale_keeps_the_minimum_size(size, min_size, expected):
    s = draft_scale(size, min_size)
    assert s == expected and s in (1, *DCT_SCALES)
    if s > 1:
        assert size[0] // s >= min_size[0] and size[1] // s >= min_size[1]


def test_draft_scale_is_the_largest_that_fits():
    for w in range(1, 400, 7):
        for h in (1, 50, 64, 130, 257, 399):
            s = draft_scale((w, h), (32, 32))
            fits = [d for d in DCT_SCALES if w // d >= 32 and h // d >= 32]
            assert s == (max(fits) if fits else 1)


# ---------------------------------------------------------------- decoding

def test_decode_image_is_full_size_rgb_and_applies_exif_orientation():
    arr = photo(90, 60)
    for orientation in range(1, 9):
        img = decode_image(encode(arr, orientation=orientation, quality=95))
        assert img.mode == "RGB" and img.size == ((90, 60) if orientation < 5 else (60, 90))
    upright = np.asarray(decode_image(encode(arr, orientation=1, quality=95)))
    assert mad(np.asarray(decode_image(encode(arr, orientation=3, quality=95))), upright[::-1, ::-1]) < 3.0
    assert mad(np.asarray(decode_image(encode(arr, orientation=6, quality=95))), np.rot90(upright, -1)) < 3.0


def test_decode_scaled_without_min_size_is_decode_image(tmp_path):
    data = encode(photo(1000, 700))
    img, s = decode_scaled(data)
    assert s == 1 and img.size == (1000, 700)
    assert np.array_equal(np.asarray(img), np.asarray(decode_image(data)))
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    assert np.array_equal(np.asarray(decode_scaled(path)[0]), np.asarray(img))
    assert np.array_equal(np.asarray(decode_scaled(str(path), None, "0 0 10 10")[0]), np.asarray(img))


def test_decode_scaled_reads_a_large_jpeg_at_the_chosen_scale():
    data = encode(photo(1000, 700))
    full = decode_image(data)
    for min_size, s_expected in [((64, 64), 8), ((200, 100), 4), ((400, 300), 2), ((600, 600), 1)]:
        img, s = decode_scaled(data, min_size)
        assert s == s_expected == draft_scale((1000, 700), min_size)
        assert img.mode == "RGB" and img.size == (-(-1000 // s), -(-700 // s))  # ceil(full / s)
        small = full.resize(img.size, Image.Resampling.BOX)
        assert mad(img, small) < 6.0  # the DCT-domain reduction is close to a box filter


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_orientation_is_applied_after_the_draft(orientation):
    data = encode(photo(900, 600, seed=orientation), orientation=orientation)
    img, s = decode_scaled(data, (64, 64))
    assert s == 8 and img.size == ((113, 75) if orientation < 5 else (75, 113))
    assert mad(img, decode_image(data).resize(img.size, Image.Resampling.BOX)) < 6.0


def test_crop_box_chooses_the_scale_and_is_checked_in_the_rotated_frame():
    data = encode(photo(1000, 700))
    assert decode_scaled(data, (64, 64), (100, 50, 900, 650))[1] == 8  # 800 x 600 -> 100 x 75
    assert decode_scaled(data, (64, 64), "400 300 600 420")[1] == 1  # 200 x 120: 120 // 2 < 64
    with pytest.raises(ValueError, match="outside"):
        decode_scaled(data, (64, 64), "0 0 1001 700")
    rotated = encode(photo(1000, 700), orientation=6)  # 700 x 1000 once rotated
    assert decode_scaled(rotated, (64, 64), "0 0 700 1000")[1] == 8
    with pytest.raises(ValueError, match="outside the 700x1000 image"):
        decode_scaled(rotated, (64, 64), "0 0 1000 700")


def test_png_and_webp_are_never_drafted():
    arr = photo(1000, 700)
    for fmt in ("PNG", "WEBP"):
        img, s = decode_scaled(encode(arr, fmt), (64, 64))
        assert s == 1 and img.size == (1000, 700)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode):
    arr = photo(40, 30)
    if mode == "I;16":
        img = Image.fromarray((arr[..., 0].astype(np.uint16) * 257))
        assert img.mode == "I;16"
        out = decode_image(encode(img, "PNG"))
        assert np.array_equal(np.asarray(out)[..., 0], arr[..., 0])  # 16 bits scaled back to 8
        return
    img = Image.fromarray(arr).convert(mode)
    if mode in ("RGBA", "LA"):
        img.putalpha(0)  # fully transparent: composited on white
    out = decode_image(encode(img, "JPEG" if mode == "CMYK" else "PNG"))
    assert out.mode == "RGB" and out.size == (40, 30)
    if mode in ("RGBA", "LA"):
        assert (np.asarray(out) == 255).all()


@pytest.mark.parametrize("data, code", [
    (b"", "empty"),
    (b"not an image at all", "unsupported_format"),
    (encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported_format"),
    (encode(photo(300, 200))[:2000], "truncated"),
])
def test_error_codes(data, code):
    with pytest.raises(ImageDecodeError) as e:
        decode_image(data)
    assert e.value.code == code and isinstance(e.value, ValueError)
    if code == "unsupported_format":
        assert str(e.value) == f"not a {'/'.join(ALLOWED_FORMATS)} image"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_too_many_pixels():
    data = encode(Image.new("L", (MAX_IMAGE_PIXELS // 1000 + 1, 1000)), "PNG")
    with pytest.raises(ImageDecodeError) as e:
        decode_scaled(data, (64, 64))
    assert e.value.code == "too_large"


def test_a_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "missing.jpg")


# ---------------------------------------------------------------- crop boxes

def test_parse_crop_box():
    assert parse_crop_box("") is None and parse_crop_box(None) is None and parse_crop_box("  ") is None
    assert parse_crop_box("1 2 3 4") == (1, 2, 3, 4) == parse_crop_box("1,2,3,4")
    for bad in ("1 2 3", "1 2 3 x", "3 2 1 4", "0 5 10 5", "-1 0 4 4"):
        with pytest.raises(ValueError, match="crop_box"):
            parse_crop_box(bad)


def test_crop():
    img = Image.fromarray(photo(50, 40))
    assert crop(img, None) is img and crop(img, "") is img
    assert np.array_equal(np.asarray(crop(img, "10 5 30 25")), np.asarray(img)[5:25, 10:30])
    assert crop(img, (0, 0, 50, 40)).size == (50, 40)
    with pytest.raises(ValueError, match="outside the 50x40 image"):
        crop(img, "0 0 51 40")
