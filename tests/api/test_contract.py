"""The HTTP contract through real gunicorn: OpenAPI spec and docs, OIP v2, TF Serving, probes."""

from __future__ import annotations

import base64
import json
import struct

import pytest
import requests
from openapi_spec_validator import validate

from api import create_app

MODEL = "planespotter"


def _b64(photo) -> str:
    return base64.b64encode(photo.read_bytes()).decode()


def test_openapi_is_valid_and_documents_every_route(server):
    spec = requests.get(server.url + "/openapi.json", timeout=10).json()
    validate(spec)  # OpenAPI 3.0 schema validation (raises on an invalid document)
    app = create_app({"MODEL_DIR": "/nonexistent"}, start_engine=False)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    missing = []
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:", "<").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (path, method.lower()) not in documented:
                missing.append((path, method))
    assert not missing, f"routes without an OpenAPI operation: {missing}"
    for path in ("/predict", "/names", "/v2/models/{name}/infer", "/v1/models/{name}:predict", "/metrics",
                 "/__docs__/", "/"):
        assert path in spec["paths"]


def test_docs_page_and_assets_are_served_offline(server):
    page = requests.get(server.url + "/__docs__/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text and "../openapi.json" in page.text
    js = requests.get(server.url + "/__docs__/swagger-ui-bundle.js", timeout=10)
    assert js.status_code == 200 and len(js.content) > 100_000
    assert requests.get(server.url + "/__docs__/../../api/config.py", timeout=10).status_code == 404
    # plumber's path without the slash redirects to the page
    r = requests.get(server.url + "/__docs__", timeout=10, allow_redirects=False)
    assert r.status_code in (301, 308) and r.headers["Location"].endswith("/__docs__/")


def test_ping_and_unknown_method(server):
    assert requests.get(server.url + "/ping", timeout=5).json() == {"status": "online"}
    r = requests.delete(server.url + "/predict", timeout=5)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_oip_v2_health_and_metadata(server):
    assert requests.get(server.url + "/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(server.url + "/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(server.url + "/v2", timeout=5).json()["extensions"] == ["binary_tensor_data"]
    meta = requests.get(server.url + f"/v2/models/{MODEL}", timeout=5).json()
    assert meta["versions"] == ["20000101T000000Z"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in meta["outputs"]} >= {"manufacturer", "family", "type", "answer", "unsure"}
    assert requests.get(server.url + f"/v2/models/{MODEL}/ready", timeout=5).json() == {"name": MODEL, "ready": True}
    r = requests.get(server.url + "/v2/models/resnet/ready", timeout=5)
    assert r.status_code == 404 and r.json()["error"] == "model_not_found"


def test_oip_v2_infer_json_and_binary_agree_with_native(server, smoke_photos):
    a, b = smoke_photos[1], smoke_photos[6]
    native = [requests.post(server.url + "/predict", data=p.read_bytes(), headers={"Content-Type": "image/jpeg"},
                            timeout=60).json() for p in (a, b)]
    req = {"id": "req-1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [_b64(a), _b64(b)]}]}
    r = requests.post(server.url + f"/v2/models/{MODEL}/infer", json=req, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == MODEL and body["id"] == "req-1" and body["model_version"] == "20000101T000000Z"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["manufacturer"]["datatype"] == "BYTES" and out["manufacturer"]["shape"] == [2]
    assert out["manufacturer"]["data"] == [n["manufacturer"]["label"] for n in native]
    assert out["type"]["data"] == [n["type"]["label"] or "" for n in native]
    assert out["family"]["data"] == [n["family"]["label"] for n in native]
    assert out["answer"]["data"] == [n["answer"]["label"] for n in native]
    assert out["unsure"]["data"] == [n["unsure"] for n in native]
    assert out["manufacturer_probability"]["data"] == pytest.approx(
        [n["manufacturer"]["probability"] for n in native], abs=1e-5)

    # binary tensor data extension, asking for one output only
    blob = b"".join(struct.pack("<I", len(p.read_bytes())) + p.read_bytes() for p in (a, b))
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "manufacturer"}]}).encode()
    r = requests.post(server.url + f"/v2/models/{MODEL}/infer", data=header + blob, timeout=60,
                      headers={"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [{"name": "manufacturer", "datatype": "BYTES", "shape": [2],
                                    "data": out["manufacturer"]["data"]}]


@pytest.mark.parametrize("req, code", [
    ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, "bad_datatype"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGVsbG8="]}]}, "bad_shape"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["***"]}]}, "bad_base64"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGVsbG8="]}]},
     "unsupported_format_image"),
    ({"inputs": []}, "bad_request"),
    ([1, 2, 3], "bad_json"),
])
def test_oip_v2_infer_bad_requests_are_400(server, req, code):
    r = requests.post(server.url + f"/v2/models/{MODEL}/infer", json=req, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == code, r.text


def test_tf_serving_status_and_predict_formats(server, smoke_photos):
    st = requests.get(server.url + f"/v1/models/{MODEL}", timeout=5).json()
    assert st == {"model_version_status": [{"version": "20000101T000000Z", "state": "AVAILABLE",
                                            "status": {"error_code": "OK", "error_message": ""}}]}
    photo = smoke_photos[2]
    native = requests.post(server.url + "/predict", data=photo.read_bytes(), headers={"Content-Type": "image/jpeg"},
                           timeout=60).json()
    row = requests.post(server.url + f"/v1/models/{MODEL}:predict", timeout=60,
                        json={"signature_name": "serving_default", "instances": [{"b64": _b64(photo)}]}).json()
    named = requests.post(server.url + f"/v1/models/{MODEL}:predict", timeout=60,
                          json={"instances": [{"image": {"b64": _b64(photo)}}]}).json()
    col = requests.post(server.url + f"/v1/models/{MODEL}:predict", timeout=60,
                        json={"inputs": {"image": [{"b64": _b64(photo)}]}}).json()
    assert row["predictions"] == named["predictions"]
    p = row["predictions"][0]
    assert p["manufacturer"] == native["manufacturer"]["label"] and p["type"] == (native["type"]["label"] or "")
    assert p["family"] == native["family"]["label"] and p["answer"] == native["answer"]["label"]
    assert col["outputs"]["manufacturer"] == [p["manufacturer"]] and col["outputs"]["unsure"] == [p["unsure"]]
    bad = requests.post(server.url + f"/v1/models/{MODEL}:predict", json={"instances": [{"x": 1, "y": 2}]}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_json"
    assert requests.post(server.url + "/v1/models/other:predict", json={"instances": []}, timeout=10).status_code == 404
    assert requests.post(server.url + f"/v1/models/{MODEL}:predict", data="x", timeout=10,
                         headers={"Content-Type": "text/plain"}).status_code == 415


def test_top_k_parameter(server, smoke_photos):
    r = requests.post(server.url + "/predict?top_k=4", data=smoke_photos[0].read_bytes(),
                      headers={"Content-Type": "image/jpeg"}, timeout=60)
    top = r.json()["predictions"][0]["top_k"]
    assert 1 <= len(top) <= 4
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    for bad in ("0", "51", "x"):
        r = requests.post(server.url + f"/predict?top_k={bad}", data=b"", headers={"Content-Type": "image/jpeg"},
                          timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "bad_parameter"
