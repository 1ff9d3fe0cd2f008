"""HTTP parity: the same requests to the R plumber server (r/plumber.R) and to our gunicorn
server — status code, Content-Type and body byte for byte for every shared route. Values that
differ by nature (``timing_ms``, ``load_seconds``) are masked before the byte comparison; the
differences that remain are checked to be exactly the ones listed in r/README.md."""

from __future__ import annotations

import base64
import io
import re

import pytest
import requests
from PIL import Image

from rparity import PAINTED_REGISTRATION, SMOKE_DIR, registration_png, require_registry

MASK = re.compile(rb'"(timing_ms|load_seconds)":(\{[^}]*\}|[-0-9.eE+]+|null)')


def masked(body: bytes) -> bytes:
    return MASK.sub(rb'"\1":"<masked>"', body)


def _png_rgba() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buf, "PNG")
    return buf.getvalue()


def _tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 9), (200, 30, 10)).save(buf, "JPEG")
    return buf.getvalue()


JPG = (SMOKE_DIR / "boeing_767.jpg").read_bytes() if SMOKE_DIR.is_dir() else b""
JPG2 = (SMOKE_DIR / "airbus_a380_emirates.jpg").read_bytes() if SMOKE_DIR.is_dir() else b""
REG_PHOTO = "airbus_a340-300_lufthansa.jpg"  # a smoke photo whose registration the reader finds (D-AIGN)
JPG_REG = (SMOKE_DIR / REG_PHOTO).read_bytes() if SMOKE_DIR.is_dir() else b""
PNG_REG = registration_png()  # generated: PAINTED_REGISTRATION in black on white

# name -> (method, path, requests kwargs)
CASES = {
    "ping": ("GET", "/ping", {}),
    "healthz": ("GET", "/healthz", {}),
    "readyz": ("GET", "/readyz", {}),
    "metadata": ("GET", "/metadata", {}),
    "names": ("GET", "/names", {}),
    "get_predict": ("GET", "/predict?path=boeing_767.jpg", {}),
    "get_predict_top_k_1": ("GET", "/predict?path=airbus_a380_emirates.jpg&top_k=1", {}),
    "get_predict_top_k_plus": ("GET", "/predict?path=boeing_767.jpg&top_k=%2B2", {}),
    "get_not_found": ("GET", "/predict?path=nope.jpg", {}),
    "get_not_found_unicode": ("GET", "/predict?path=%C3%A9t%C3%A9.jpg", {}),
    "get_not_found_quote": ("GET", "/predict?path=it%27s%20here.jpg", {}),
    "get_directory": ("GET", "/predict?path=.", {}),
    "get_escape": ("GET", "/predict?path=../notes/stack.md", {}),
    "get_escape_missing": ("GET", "/predict?path=../no/such.jpg", {}),
    "get_absolute": ("GET", "/predict?path=/etc/passwd", {}),
    "get_missing_path": ("GET", "/predict", {}),
    "get_drive_letter": ("GET", "/predict?path=C:x.jpg", {}),
    "get_path_and_url": ("GET", "/predict?path=boeing_767.jpg&url=http://example.org/a.jpg", {}),
    "get_url_disabled": ("GET", "/predict?url=http://example.org/a.jpg", {}),
    "get_empty_path": ("GET", "/predict?path=", {}),
    "get_bad_top_k": ("GET", "/predict?path=boeing_767.jpg&top_k=abc", {}),
    "get_top_k_range": ("GET", "/predict?path=boeing_767.jpg&top_k=99", {}),
    "unknown_route": ("GET", "/nope", {}),
    "method_not_allowed": ("POST", "/ping", {}),
    "post_multipart": ("POST", "/predict", {"files": {"image": ("boeing_767.jpg", JPG, "image/jpeg")}}),
    "post_multipart_two": ("POST", "/predict", {"files": [("image", ("a.jpg", JPG, "image/jpeg")),
                                                         ("image", ("b.jpg", JPG2, "image/jpeg"))]}),
    "post_png_rgba": ("POST", "/predict", {"files": {"image": ("x.png", _png_rgba(), "image/png")}}),
    "post_raw_jpeg": ("POST", "/predict", {"data": JPG, "headers": {"Content-Type": "image/jpeg"}}),
    "post_json_b64": ("POST", "/predict", {"json": {"instances": [{"b64": base64.b64encode(JPG2).decode()}]}}),
    "post_empty_image": ("POST", "/predict", {"files": {"image": ("x.jpg", b"", "image/jpeg")}}),
    "post_not_an_image": ("POST", "/predict", {"files": {"image": ("x.jpg", b"hello, I am not an image\n",
                                                                   "image/jpeg")}}),
    "post_truncated": ("POST", "/predict", {"files": {"image": ("x.jpg", JPG[:2000], "image/jpeg")}}),
    "post_missing_field": ("POST", "/predict", {"files": {"file": ("x.jpg", JPG, "image/jpeg")}}),
    "post_field_not_a_file": ("POST", "/predict", {"data": {"image": "abc"},
                                                    "files": {"other": ("x.txt", b"x", "text/plain")}}),
    "post_bad_json": ("POST", "/predict", {"data": b"{nope", "headers": {"Content-Type": "application/json"}}),
    "post_json_no_instances": ("POST", "/predict", {"json": {"x": 1}}),
    "post_json_bad_base64": ("POST", "/predict", {"json": {"instances": [{"b64": "@@@"}]}}),
    "post_wrong_type": ("POST", "/predict", {"data": b"abc", "headers": {"Content-Type": "text/plain"}}),
    "post_no_body": ("POST", "/predict", {}),
    "post_bad_top_k": ("POST", "/predict?top_k=0", {"data": JPG, "headers": {"Content-Type": "image/jpeg"}}),
    "post_too_many_images": ("POST", "/predict", {"files": [("image", (f"{i}.jpg", _tiny_jpeg(), "image/jpeg"))
                                                           for i in range(65)]}),
    "post_too_large": ("POST", "/predict", {"data": b"\0" * (32 * 1024 * 1024 + 1),
                                             "headers": {"Content-Type": "image/jpeg"}}),
    # the registration reader (?registration=, or a JSON body's "registration"), on the configured registry
    "get_registration": ("GET", f"/predict?path={REG_PHOTO}&registration=1", {}),
    "get_registration_word": ("GET", f"/predict?path={REG_PHOTO}&registration=%20TRUE%20&top_k=2", {}),
    "get_registration_off": ("GET", f"/predict?path={REG_PHOTO}&registration=off", {}),
    "get_registration_empty": ("GET", f"/predict?path={REG_PHOTO}&registration=", {}),
    "get_bad_registration": ("GET", f"/predict?path={REG_PHOTO}&registration=maybe", {}),
    "get_bad_registration_before_path": ("GET", "/predict?registration=2", {}),
    "post_multipart_registration": ("POST", "/predict?registration=1", {"files": [
        ("image", (REG_PHOTO, JPG_REG, "image/jpeg")), ("image", ("painted.png", PNG_REG, "image/png")),
        ("image", ("b.jpg", JPG2, "image/jpeg"))]}),
    "post_raw_registration": ("POST", "/predict?registration=yes", {"data": PNG_REG,
                                                                   "headers": {"Content-Type": "image/png"}}),
    "post_json_registration": ("POST", "/predict", {"json": {"instances": [{"b64": base64.b64encode(PNG_REG).decode()}],
                                                             "registration": True}}),
    "post_json_registration_decides": ("POST", "/predict?registration=1", {"json": {
        "instances": [{"b64": base64.b64encode(PNG_REG).decode()}], "registration": False}}),
    "post_json_registration_null": ("POST", "/predict?registration=1", {"json": {
        "instances": [{"b64": base64.b64encode(PNG_REG).decode()}], "registration": None}}),
    "post_json_bad_registration": ("POST", "/predict", {"json": {
        "instances": [{"b64": base64.b64encode(PNG_REG).decode()}], "registration": "yes"}}),
    "post_json_bad_registration_value": ("POST", "/predict", {"json": {
        "instances": [{"b64": base64.b64encode(PNG_REG).decode()}], "registration": {"a": [1, 2.5, None, "it's"]}}}),
    "post_bad_registration_missing_field": ("POST", "/predict?registration=maybe",
                                            {"files": {"file": ("x.jpg", JPG, "image/jpeg")}}),
    "post_bad_registration": ("POST", "/predict?registration=maybe", {"data": JPG,
                                                                      "headers": {"Content-Type": "image/jpeg"}}),
}

# Differences that remain (r/README.md): name -> (python status, R status)
KNOWN = {
    "head_ping": ("HEAD", "/ping", (200, 405)),        # Flask answers HEAD for every GET route
    "options_ping": ("OPTIONS", "/ping", (200, 405)),  # and OPTIONS with an Allow header
}


def send(base: str, method: str, path: str, kw: dict) -> requests.Response:
    return requests.request(method, base + path, timeout=120, **kw)


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer(py_server, r_server, parity, case):
    method, path, kw = CASES[case]
    a = send(py_server.url, method, path, kw)
    b = send(r_server.url, method, path, kw)
    ct_a, ct_b = a.headers.get("Content-Type"), b.headers.get("Content-Type")
    raw_equal = a.content == b.content
    body_equal = masked(a.content) == masked(b.content)
    ok = parity.check(f"http.{case}", a.status_code == b.status_code and ct_a == ct_b and body_equal,
                      request=f"{method} {path}", status=[a.status_code, b.status_code],
                      content_type=[ct_a, ct_b], body_bytes=[len(a.content), len(b.content)],
                      body_equal_after_masking=body_equal, body_equal_raw=raw_equal,
                      masked_fields=sorted({m.group(1).decode() for m in MASK.finditer(a.content)}))
    assert ok, (a.status_code, b.status_code, ct_a, ct_b, a.content[:300], b.content[:300])


@pytest.mark.parametrize("case", list(KNOWN))
def test_known_difference(py_server, r_server, parity, case):
    method, path, expected = KNOWN[case]
    a = requests.request(method, py_server.url + path, timeout=30)
    b = requests.request(method, r_server.url + path, timeout=30)
    ok = parity.check(f"http.{case}", (a.status_code, b.status_code) == expected, known_difference=True,
                      request=f"{method} {path}", status=[a.status_code, b.status_code])
    assert ok, (a.status_code, b.status_code)


def test_bodies_are_not_trivially_equal(py_server, r_server):
    """The comparison is meaningful: predictions carry real probabilities, equal on both sides."""
    a = send(py_server.url, "GET", "/predict?path=boeing_767.jpg", {}).json()
    b = send(r_server.url, "GET", "/predict?path=boeing_767.jpg", {}).json()
    p = a["predictions"][0]["manufacturer"]["probability"]
    assert 0.0 < p < 1.0 and p == b["predictions"][0]["manufacturer"]["probability"]
    assert a["timing_ms"]["inference"] > 0 and b["timing_ms"]["inference"] >= 0


def test_registration_cases_read_something(py_server, r_server):
    """The registration cases are meaningful: with the configured registry, both servers read the
    smoke photo's and the generated image's registrations (the byte comparison above covers the rest)."""
    require_registry()
    for base in (py_server.url, r_server.url):
        photo = send(base, "GET", f"/predict?path={REG_PHOTO}&registration=1", {}).json()
        painted = send(base, "POST", "/predict?registration=1", {"data": PNG_REG,
                                                                  "headers": {"Content-Type": "image/png"}}).json()
        plain = send(base, "GET", f"/predict?path={REG_PHOTO}", {}).json()
        assert photo["registration"] is not None and photo["predictions"][0]["registration"] == photo["registration"]
        assert painted["registration"]["text"] == PAINTED_REGISTRATION
        assert painted["registration"]["icao_type"] == "B748" and len(painted["registration"]["box"]) == 4
        assert plain["registration"] is None and plain["answer"]["source"] == "image"
        meta = send(base, "GET", "/metadata", {}).json()
        assert meta["stages"][-1] == "read" and meta["registration"]["available"] is True
