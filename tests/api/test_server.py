"""The API through real gunicorn on loopback with a tiny real Keras cascade."""

from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image


def test_predict_multipart_real_jpeg(server, smoke_photos):
    photo = smoke_photos[0]
    with open(photo, "rb") as f:
        r = requests.post(server.url + "/predict", files={"image": (photo.name, f, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "20000101T000000Z"
    assert body["manufacturer"]["label"] in ("Airbus", "Boeing")
    assert 0.0 <= body["manufacturer"]["probability"] <= 1.0
    m = body["manufacturer"]["label"]
    expected_types = {"Airbus": {"A320", "A388"}, "Boeing": {"B738", "B744"}}[m]
    expected_families = {"Airbus": {"A320", "A380", "A350"}, "Boeing": {"B737", "B747", "B777"}}[m]
    assert body["family"]["label"] in expected_families
    assert isinstance(body["family"]["probability"], float)
    if body["type"]["label"] is not None:  # named only when confident (type threshold 0.34)
        assert body["type"]["label"] in expected_types and body["type"]["probability"] >= 0.34
        assert body["answer"] == {"level": "type", "label": body["type"]["label"],
                                  "text": f"{m} {body['type']['label']}", "source": "image"}
    else:
        label = body["family"]["label"] + " family"
        assert body["answer"] == {"level": "family", "label": label, "text": f"{m} {label}", "source": "image"}
    assert body["aircraft"] == {"probability": None, "threshold": None} and body["box"] is None  # no localizer
    assert isinstance(body["unsure"], bool)
    assert body["predictions"][0]["file"] == photo.name


def test_healthz_and_readyz(server):
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "alive"}
    r = requests.get(server.url + "/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["model_version"] == "20000101T000000Z"


def _jpeg_bytes(photo) -> bytes:
    return photo.read_bytes()


@pytest.mark.parametrize("case", ["empty", "text", "truncated"])
def test_bad_input_is_400_json_and_server_survives(server, smoke_photos, case):
    data = {"empty": b"", "text": b"hello, I am not an image\n",
            "truncated": _jpeg_bytes(smoke_photos[0])[:2000]}[case]
    r = requests.post(server.url + "/predict", files={"image": ("x.jpg", data, "image/jpeg")}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"error", "message"}
    assert body["error"] in {"empty_image", "unsupported_format_image", "truncated_image"}
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_raw_body_and_b64_json_agree_with_multipart(server, smoke_photos):
    import base64

    data = _jpeg_bytes(smoke_photos[3])
    a = requests.post(server.url + "/predict", data=data, headers={"Content-Type": "image/jpeg"}, timeout=60).json()
    b = requests.post(server.url + "/predict", json={"instances": [{"b64": base64.b64encode(data).decode()}]},
                      timeout=60).json()
    assert a["manufacturer"] == b["manufacturer"] and a["type"] == b["type"]


def test_png_rgba_is_accepted(server):
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buf, "PNG")
    r = requests.post(server.url + "/predict", data=buf.getvalue(), headers={"Content-Type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text


def test_wrong_content_type_is_415(server):
    r = requests.post(server.url + "/predict", data=b"abc", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"


def test_get_predict_path_and_traversal(server):
    ok = requests.get(server.url + "/predict", params={"path": "boeing_767.jpg"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["predictions"][0]["file"] == "boeing_767.jpg"
    assert requests.get(server.url + "/predict", params={"path": "../notes/stack.md"}, timeout=10).status_code == 403
    assert requests.get(server.url + "/predict", params={"path": "/etc/passwd"}, timeout=10).status_code == 400
    assert requests.get(server.url + "/predict", params={"path": "nope.jpg"}, timeout=10).status_code == 404


def test_names_is_plumber_boxed_array(server):
    r = requests.get(server.url + "/names", timeout=60)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.text in ('["Airbus"]', '["Boeing"]')


def test_names_without_default_image_classifies_the_versions_reference_image(api_server, tiny_model_dir):
    """A fresh server (no PLANESPOTTER_DEFAULT_IMAGE) answers /names out of the box: the
    manufacturer of the model version's own reference image (reference.png)."""
    r = requests.get(api_server.url + "/names", timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    reference = (tiny_model_dir / "reference.png").read_bytes()
    p = requests.post(api_server.url + "/predict", data=reference, headers={"Content-Type": "image/png"}, timeout=60)
    assert p.status_code == 200, p.text
    assert r.text == json.dumps([p.json()["manufacturer"]["label"]])


def test_unknown_route_is_json_404(server):
    r = requests.get(server.url + "/no/such/route", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_metadata(server):
    body = requests.get(server.url + "/metadata", timeout=10).json()
    assert body["model_version"] == "20000101T000000Z"
    assert body["labels"]["types"]["Boeing"] == ["B738", "B744", "B777 family"]
    assert body["labels"]["families"]["Boeing"]["B777 family"] == "B777"
    assert len(body["preprocessing"]["reference_sha256"]) == 64
    # the tiny version: no localizer, no TTA; the registration reader when a registry is loaded
    assert body["stages"] == ["decode", "classify"] + (["read"] if body["registration"]["available"] else [])
