"""The registration reader over HTTP: asked for with ``?registration=1`` (or a JSON/OIP field), in
every protocol's answer, reported by /readyz and /metadata, off without a registry, a clear
failure for a file that is not a registry, and 4xx (never 5xx) for bad requests."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image, ImageDraw, ImageFont

from api import create_app
from client.server import Server

MODEL = "planespotter"


def _png(text: str | None = "D-ABYI") -> bytes:
    img = Image.new("RGB", (1200, 500), "white")
    if text:
        ImageDraw.Draw(img).text((100, 180), text, fill="black", font=ImageFont.load_default(size=120))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def registry_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("registry") / "registry.csv.gz"
    import gzip

    path.write_bytes(gzip.compress(b"registration,icao_type,description\nD-ABYI,B748,BOEING 747-8\n"))
    return path


@pytest.fixture(scope="module")
def reg_server(tiny_model_dir, registry_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("reg-images")
    (root / "d-abyi.png").write_bytes(_png())
    srv = Server(tiny_model_dir, env={"PLANESPOTTER_REGISTRY": str(registry_csv),
                                      "PLANESPOTTER_IMAGE_ROOT": str(root)})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _check_reading(pred: dict) -> None:
    reg = pred["registration"]
    assert reg["text"] == "D-ABYI" and reg["icao_type"] == "B748" and reg["description"] == "BOEING 747-8"
    assert len(reg["box"]) == 4 and reg["box"][0] < reg["box"][2] and reg["box"][1] < reg["box"][3]
    if pred["answer"]["source"] == "registration":
        assert pred["type"]["label"] == "B748" and pred["answer"]["level"] == "type" and reg["agrees"]
    else:
        assert reg["agrees"] == (pred["manufacturer"]["label"] == "Boeing")


def test_native_get_post_and_json_ask_for_the_reading(reg_server):
    url = reg_server.url
    plain = requests.post(url + "/predict", data=_png(), headers={"Content-Type": "image/png"}, timeout=60).json()
    assert plain["registration"] is None and plain["predictions"][0]["registration"] is None
    assert plain["answer"]["source"] == "image"
    for resp in (
        requests.post(url + "/predict?registration=1", data=_png(), headers={"Content-Type": "image/png"}, timeout=60),
        requests.post(url + "/predict?registration=true", files={"image": ("a.png", _png(), "image/png")}, timeout=60),
        requests.get(url + "/predict", params={"path": "d-abyi.png", "registration": "1"}, timeout=60),
        requests.post(url + "/predict", json={"instances": [{"b64": base64.b64encode(_png()).decode()}],
                                              "registration": True}, timeout=60),
    ):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        _check_reading(body["predictions"][0])
        assert body["registration"] == body["predictions"][0]["registration"]  # repeated at top level
    # the JSON field decides over the query
    off = requests.post(url + "/predict?registration=1", timeout=60,
                        json={"instances": [{"b64": base64.b64encode(_png()).decode()}], "registration": False})
    assert off.json()["registration"] is None
    # no text: null
    blank = requests.post(url + "/predict?registration=1", data=_png(None), headers={"Content-Type": "image/png"},
                          timeout=60).json()
    assert blank["registration"] is None


def test_oip_and_tf_serving_carry_the_reading(reg_server):
    b64 = base64.b64encode(_png()).decode()
    oip = requests.post(reg_server.url + f"/v2/models/{MODEL}/infer", timeout=60, json={
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
        "parameters": {"registration": True}}).json()
    out = {o["name"]: o for o in oip["outputs"]}
    assert out["registration"]["data"] == ["D-ABYI"] and out["registration_icao_type"]["data"] == ["B748"]
    assert out["registration_box"]["shape"] == [1, 4] and out["registration_box"]["datatype"] == "INT32"
    assert out["registration_agrees"]["datatype"] == "BOOL" and out["answer_source"]["data"][0] in ("image", "registration")
    tfs = requests.post(reg_server.url + f"/v1/models/{MODEL}:predict", timeout=60,
                        json={"instances": [{"b64": b64}], "registration": True}).json()["predictions"][0]
    assert tfs["registration"] == "D-ABYI" and tfs["registration_box"] == out["registration_box"]["data"]
    unasked = requests.post(reg_server.url + f"/v1/models/{MODEL}:predict?registration=0", timeout=60,
                            json={"instances": [{"b64": b64}]}).json()["predictions"][0]
    assert unasked["registration"] == "" and unasked["registration_box"] == [-1, -1, -1, -1]


@pytest.mark.parametrize("how", ["query", "json", "oip", "tfs"])
def test_bad_registration_values_are_400_with_json(reg_server, how):
    b64 = base64.b64encode(_png()).decode()
    url = reg_server.url
    resp = {
        "query": lambda: requests.post(url + "/predict?registration=maybe", data=_png(),
                                       headers={"Content-Type": "image/png"}, timeout=60),
        "json": lambda: requests.post(url + "/predict", json={"instances": [{"b64": b64}], "registration": "yes"},
                                      timeout=60),
        "oip": lambda: requests.post(url + f"/v2/models/{MODEL}/infer", timeout=60, json={
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
            "parameters": {"registration": 1}}),
        "tfs": lambda: requests.post(url + f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64}],
                                                                             "registration": "1"},
                                     timeout=60),
    }[how]()
    assert resp.status_code == 400 and resp.json()["error"] == "bad_parameter", resp.text
    assert "registration" in resp.json()["message"]


def test_ready_and_metadata_report_the_registry(reg_server, registry_csv):
    ready = requests.get(reg_server.url + "/readyz", timeout=10).json()
    assert ready["registration"] == {"available": True, "registry": str(registry_csv), "entries": 1}
    meta = requests.get(reg_server.url + "/metadata", timeout=10).json()
    assert meta["registration"]["available"] and meta["stages"][-1] == "read"


def _app(tiny_model_dir, monkeypatch, registry: str):
    monkeypatch.setenv("PLANESPOTTER_REGISTRY", registry)
    app = create_app({"MODEL_DIR": str(tiny_model_dir), "WARMUP": False}, start_engine=False)
    app.extensions["engine"].start(background=False)
    return app


def test_without_a_registry_reading_is_off(tiny_model_dir, monkeypatch):
    c = _app(tiny_model_dir, monkeypatch, "").test_client()
    assert c.get("/readyz").get_json()["registration"] == {"available": False, "registry": None, "entries": None}
    meta = c.get("/metadata").get_json()
    assert "read" not in meta["stages"] and meta["registration"]["available"] is False
    body = c.post("/predict?registration=1", data=_png(), content_type="image/png").get_json()
    assert body["registration"] is None


def test_a_file_that_is_not_a_registry_fails_start_up_naming_it(tiny_model_dir, monkeypatch, tmp_path):
    bad = tmp_path / "not-a-registry.csv"
    bad.write_text("just one column\nhello\n")
    c = _app(tiny_model_dir, monkeypatch, str(bad)).test_client()
    resp = c.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["status"] == "failed"
    assert "not-a-registry.csv" in resp.get_json()["reason"]
    assert c.post("/predict", data=_png(), content_type="image/png").status_code == 503
