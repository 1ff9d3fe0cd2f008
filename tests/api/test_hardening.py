"""Input hardening through real gunicorn: each bad input gives a JSON error with a stable code
(never a 5xx), and every image variant that should work is decoded as the plain RGB image would be.

Equality checks compare the model's probabilities for two encodings of the same pixels: requests
are sequential, so every forward pass has batch size 1 and the results are bit-identical when the
preprocessed tensors are.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import requests
from imagegen import encode, pattern
from PIL import Image



def post_raw(srv, data: bytes, ctype: str = "image/png", **kw) -> requests.Response:
    return requests.post(srv.url + "/predict", data=data, headers={"Content-Type": ctype}, timeout=60, **kw)


def probs(resp: requests.Response) -> list[float]:
    assert resp.status_code == 200, resp.text
    p = resp.json()["predictions"][0]
    return [p["manufacturer"]["probability"]] + [t["probability"] for t in p["top_k"]]


def assert_error(resp: requests.Response, status: int, code: str | set) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) >= {"error", "message"} and body["message"]
    assert body["error"] in ({code} if isinstance(code, str) else code), body


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit gray) with one tiny IDAT: a
    decompression bomb as far as the header goes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.fromarray(pattern(16, 16)), "JPEG"))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


# ---------------------------------------------------------------- size limits

def test_request_body_over_limit_is_413(api_server):
    limit = api_server.max_content_length
    r = post_raw(api_server, b"\xff\xd8" + b"\0" * (limit + 1024), "image/jpeg")
    assert_error(r, 413, "request_entity_too_large")
    files = {"image": ("big.jpg", b"\0" * (limit + 1024), "image/jpeg")}
    r = requests.post(api_server.url + "/predict", files=files, timeout=60)
    assert_error(r, 413, "request_entity_too_large")
    assert requests.get(api_server.url + "/healthz", timeout=5).status_code == 200


def test_too_many_images_is_413(server):
    small = encode(Image.fromarray(pattern(8, 8)), "PNG")
    files = [("image", (f"{i}.png", small, "image/png")) for i in range(65)]
    assert_error(requests.post(server.url + "/predict", files=files, timeout=60), 413, "too_many_images")


@pytest.mark.parametrize("name, data", [
    ("png 30000x30000 (Pillow DecompressionBombError)", png_header_only(30_000, 30_000)),
    ("png 8000x8000 (over the 50 Mpx limit)", png_header_only(8_000, 8_000)),
    ("jpeg 65000x65000", jpeg_with_size(65_000, 65_000)),
])
def test_decompression_bombs_are_413_never_5xx(server, name, data):
    ctype = "image/jpeg" if name.startswith("jpeg") else "image/png"
    assert_error(post_raw(server, data, ctype), 413, "too_large_image")


# ---------------------------------------------------------------- broken and unsupported files

@pytest.mark.parametrize("case, code", [
    ("zero bytes", "empty_image"),
    ("truncated png", {"truncated_image", "unreadable_image"}),
    ("truncated jpeg", {"truncated_image", "unreadable_image"}),
    ("gif", "unsupported_format_image"),
    ("bmp", "unsupported_format_image"),
    ("tiff", "unsupported_format_image"),
    ("html", "unsupported_format_image"),
])
def test_broken_or_unsupported_files_are_400(server, case, code):
    img = Image.fromarray(pattern(200, 150))
    data = {
        "zero bytes": b"",
        "truncated png": encode(img, "PNG")[:300],
        "truncated jpeg": encode(img, "JPEG")[:400],
        "gif": encode(img.convert("P"), "GIF"),
        "bmp": encode(img, "BMP"),
        "tiff": encode(img, "TIFF"),
        "html": b"<html><body>not a plane</body></html>",
    }[case]
    # the declared type must not matter: the bytes are checked against the allow-list
    assert_error(post_raw(server, data, "image/jpeg"), 400, code)
    files = {"image": ("x", data, "application/octet-stream")}
    assert_error(requests.post(server.url + "/predict", files=files, timeout=60), 400, code)


@pytest.mark.parametrize("ctype", ["text/plain", "image/gif", "application/x-www-form-urlencoded",
                                   "application/octet-stream", None])
def test_wrong_content_type_is_415(server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = requests.post(server.url + "/predict", data=encode(Image.fromarray(pattern()), "PNG"),
                      headers=headers, timeout=10)
    assert_error(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("body, code", [
    (b"{not json", "bad_json"),
    (b'{"instances": {"b64": "x"}}', "bad_json"),
    (b'{"instances": []}', "bad_json"),
    (b'{"instances": [{"b64": "%%%"}]}', "bad_base64"),
    (b'{"instances": [{"b64": 3}]}', "bad_json"),
    (b"[" * 100_000, "bad_json"),
])
def test_bad_json_bodies_are_400(server, body, code):
    assert_error(post_raw(server, body, "application/json"), 400, code)


def test_multipart_without_image_field_is_400(server):
    r = requests.post(server.url + "/predict", files={"photo": ("a.png", b"x", "image/png")}, timeout=10)
    assert_error(r, 400, "missing_field")


# ---------------------------------------------------------------- image variants that must work

def test_exif_orientation_is_applied(server):
    arr = pattern(60, 40, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    tagged = encode(Image.fromarray(arr), "PNG", exif=exif.tobytes())
    upright = encode(Image.fromarray(arr).transpose(Image.Transpose.ROTATE_270), "PNG")
    plain = encode(Image.fromarray(arr), "PNG")
    p_tagged, p_upright, p_plain = (probs(post_raw(server, d)) for d in (tagged, upright, plain))
    assert p_tagged == pytest.approx(p_upright, abs=1e-6)
    assert p_tagged != pytest.approx(p_plain, abs=1e-6)  # the tag changed what the model saw


def test_colour_modes_are_converted_like_rgb(server):
    arr = pattern(48, 32, seed=2)
    gray = arr[..., 0]
    rgb_of_gray = encode(Image.fromarray(np.stack([gray] * 3, -1)), "PNG")
    base_gray = probs(post_raw(server, rgb_of_gray))
    # 8-bit grayscale, and 16-bit grayscale with the same levels (v * 257 maps back to v)
    assert probs(post_raw(server, encode(Image.fromarray(gray, "L"), "PNG"))) == pytest.approx(base_gray, abs=1e-6)
    g16 = Image.fromarray(gray.astype(np.uint16) * 257)
    assert g16.mode.startswith("I;16") or g16.mode == "I"
    assert probs(post_raw(server, encode(g16, "PNG"))) == pytest.approx(base_gray, abs=1e-6)
    # palette and opaque RGBA: same pixels as RGB
    pal = Image.fromarray(arr).quantize(16)
    assert probs(post_raw(server, encode(pal, "PNG"))) == pytest.approx(
        probs(post_raw(server, encode(pal.convert("RGB"), "PNG"))), abs=1e-6)
    rgba = Image.fromarray(np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], -1), "RGBA")
    assert probs(post_raw(server, encode(rgba, "PNG"))) == pytest.approx(
        probs(post_raw(server, encode(Image.fromarray(arr), "PNG"))), abs=1e-6)
    # transparent RGBA is composited on white; grayscale+alpha, CMYK JPEG and WebP decode
    clear = rgba.copy()
    clear.putalpha(0)
    white = encode(Image.new("RGB", clear.size, (255, 255, 255)), "PNG")
    assert probs(post_raw(server, encode(clear, "PNG"))) == pytest.approx(probs(post_raw(server, white)), abs=1e-6)
    assert probs(post_raw(server, encode(Image.fromarray(gray, "L").convert("LA"), "PNG")))
    assert probs(post_raw(server, encode(Image.fromarray(arr).convert("CMYK"), "JPEG"), "image/jpeg"))
    assert probs(post_raw(server, encode(Image.fromarray(arr), "WEBP", lossless=True), "image/webp"))


@pytest.mark.parametrize("fmt, ctype", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_animated_images_use_the_first_frame(server, fmt, ctype):
    first, second = Image.fromarray(pattern(40, 40, seed=4)), Image.fromarray(pattern(40, 40, seed=5)[::-1])
    kw = {"lossless": True} if fmt == "WEBP" else {}
    animated = encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0, **kw)
    assert Image.open(io.BytesIO(animated)).n_frames == 2
    p_anim = probs(post_raw(server, animated, ctype))
    assert p_anim == pytest.approx(probs(post_raw(server, encode(first, fmt, **kw), ctype)), abs=1e-6)
    assert p_anim != pytest.approx(probs(post_raw(server, encode(second, fmt, **kw), ctype)), abs=1e-6)


# ---------------------------------------------------------------- ?path= traversal

@pytest.mark.parametrize("path, status, code", [
    ("plane.png", 200, None),
    ("sub/plane.jpg", 200, None),
    ("sub/../plane.png", 200, None),
    ("../plane.png", 403, "forbidden_path"),
    ("sub/../../plane.png", 403, "forbidden_path"),
    ("escape.png", 403, "forbidden_path"),          # a symlink out of the root
    ("/etc/passwd", 400, "bad_path"),
    ("\\etc\\passwd", 400, "bad_path"),
    ("plane.png\x00.jpg", 400, "bad_path"),
    ("", 400, "missing_parameter"),
    ("sub", 404, "not_found"),
    ("nope.png", 404, "not_found"),
])
def test_path_traversal_is_refused(api_server, path, status, code):
    r = requests.get(api_server.url + "/predict", params={"path": path}, timeout=60)
    if code is None:
        assert r.status_code == 200, r.text
    else:
        assert_error(r, status, code)


def test_encoded_traversal_is_refused(api_server):
    r = requests.get(api_server.url + "/predict?path=%2e%2e%2f%2e%2e%2fetc%2fpasswd", timeout=10)
    assert_error(r, 403, "forbidden_path")
