"""Parity on the newer parts of a model version: the localizer (aircraft gate, level ``none``),
the crop box, a third manufacturer ``Other`` (level ``manufacturer``) and flip TTA — the feature
model of ``tests/conftest.py``.

- the whole pipeline as JSON: ``r/oracle_images.R`` (``ps_predict_images``: decode, localizer,
  box, crop, cascade in R) against ``json.dumps(Pipeline.predict(...))``, byte for byte, with
  the version's gate and with the gate at 1.0; also on the parity model (no localizer);
- HTTP: the R plumber server and our gunicorn server on the feature model (gate 0.0, and gate
  1.0 through ``PLANESPOTTER_AIRCRAFT_THRESHOLD``): status, Content-Type and body byte for byte
  (``timing_ms`` / ``load_seconds`` masked) for predictions, ``/names`` and ``/metadata``;
- the R client's testthat suite against both feature servers.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
from rparity import ORACLE_BATCH, SMOKE_DIR, oracle_images, run_testthat
from rserver import RServer

from client.server import Server
from model.cascade import Cascade
from model.pipeline import Pipeline

MASK = re.compile(rb'"(timing_ms|load_seconds)":(\{[^}]*\}|[-0-9.eE+]+|null)')


def masked(body: bytes) -> bytes:
    return MASK.sub(rb'"\1":"<masked>"', body)


def _files(feature_image_dir) -> list:
    return sorted(feature_image_dir.iterdir()) + sorted(SMOKE_DIR.glob("*.jpg"))[:4]


@pytest.mark.parametrize("which", ["feature", "parity"])
def test_predict_images_json_bytes_equal(which, request, feature_image_dir, tmp_path, parity):
    model_dir = request.getfixturevalue("feature_model_dir" if which == "feature" else "parity_model_dir")
    files = _files(feature_image_dir)
    rows = oracle_images(model_dir, files, tmp_path / "r.txt")
    cascade = Cascade.load(model_dir)
    own = cascade.aircraft_threshold
    unequal, levels, boxes = [], set(), 0
    for t, start, rj in rows:
        cascade.aircraft_threshold = own if t == "default" else float(t)
        preds = Pipeline(cascade).predict(files[start:start + ORACLE_BATCH])
        levels |= {p["answer"]["level"] for p in preds}
        boxes += sum(p["box"] is not None for p in preds)
        if json.dumps(preds, separators=(",", ":")) != rj:
            unequal.append(f"{t}:{start}")
    assert len(rows) == 2 * -(-len(files) // ORACLE_BATCH)
    if which == "feature":  # the comparison covered every new answer kind
        assert {"none", "manufacturer"} <= levels and levels & {"type", "family"} and boxes > 0
    ok = parity.check(f"predictions.predict_images_json_bytes.{which}_model", not unequal, batches=len(rows),
                      unequal=unequal, levels=sorted(levels), boxes=boxes, images=len(files),
                      thresholds=["default", "1.0"], model_version=cascade.version)
    assert ok, unequal


# ---------------------------------------------------------------- HTTP on the feature model
@pytest.fixture(scope="module")
def feature_pairs(feature_model_dir, feature_image_dir):
    """(python, R) server pairs on the feature model: gate as saved (0.0) and gate 1.0; all four
    start at once, then are waited for."""
    base = {"PLANESPOTTER_IMAGE_ROOT": str(feature_image_dir), "PLANESPOTTER_DEFAULT_IMAGE": "red.png"}
    envs = {"gate0": base, "gate1": {**base, "PLANESPOTTER_AIRCRAFT_THRESHOLD": "1.0"}}
    servers = {k: (Server(feature_model_dir, env=env), RServer(feature_model_dir, env=env)) for k, env in envs.items()}
    try:
        for py, r in servers.values():
            py.wait_ready()
            r.wait_ready()
        yield servers
    finally:
        for py, r in servers.values():
            py.stop()
            r.stop()


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _cases(d) -> dict:
    files = {n: d / n for n in ("red.png", "blue.png", "exif6.jpg", "photo.jpg")}
    photo = files["photo.jpg"] if files["photo.jpg"].exists() else files["exif6.jpg"]
    return {
        "names": ("GET", "/names", {}),
        "metadata": ("GET", "/metadata", {}),
        "readyz": ("GET", "/readyz", {}),
        "get_predict_photo": ("GET", f"/predict?path={photo.name}", {}),
        "get_predict_exif6": ("GET", "/predict?path=exif6.jpg&top_k=5", {}),
        "get_predict_other": ("GET", "/predict?path=red.png", {}),
        "post_multipart_three": ("POST", "/predict", {"files": [
            ("image", (n, files[n].read_bytes(), "application/octet-stream")) for n in ("red.png", "exif6.jpg",
                                                                                        "blue.png")]}),
        "post_raw_png": ("POST", "/predict", {"data": files["blue.png"].read_bytes(),
                                              "headers": {"Content-Type": "image/png"}}),
        "post_json_b64": ("POST", "/predict", {"json": {"instances": [{"b64": _b64(photo)}]}}),
        "get_predict_registration": ("GET", f"/predict?path={photo.name}&registration=1", {}),
        "post_multipart_registration": ("POST", "/predict?registration=1", {"files": [
            ("image", (n, files[n].read_bytes(), "application/octet-stream")) for n in ("exif6.jpg", "red.png")]}),
        "post_not_an_image": ("POST", "/predict", {"files": {"image": ("x.jpg", b"no image", "image/jpeg")}}),
        "post_truncated": ("POST", "/predict", {"files": {"image": ("x.jpg", photo.read_bytes()[:1500],
                                                                    "image/jpeg")}}),
    }


CASE_NAMES = ["names", "metadata", "readyz", "get_predict_photo", "get_predict_exif6", "get_predict_other",
              "post_multipart_three", "post_raw_png", "post_json_b64", "get_predict_registration",
              "post_multipart_registration", "post_not_an_image", "post_truncated"]


@pytest.mark.parametrize("gate", ["gate0", "gate1"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_feature_model_same_answer(feature_pairs, feature_image_dir, parity, gate, case):
    method, path, kw = _cases(feature_image_dir)[case]
    py, r = feature_pairs[gate]
    a = requests.request(method, py.url + path, timeout=120, **kw)
    b = requests.request(method, r.url + path, timeout=120, **kw)
    ct_a, ct_b = a.headers.get("Content-Type"), b.headers.get("Content-Type")
    body_equal = masked(a.content) == masked(b.content)
    ok = parity.check(f"http.feature_{gate}.{case}", a.status_code == b.status_code and ct_a == ct_b and body_equal,
                      request=f"{method} {path}", status=[a.status_code, b.status_code],
                      content_type=[ct_a, ct_b], body_bytes=[len(a.content), len(b.content)],
                      body_equal_after_masking=body_equal)
    assert ok, (a.status_code, b.status_code, ct_a, ct_b, a.content[:400], b.content[:400])
    if case == "names":  # the R original's one-element array, for another manufacturer / no aircraft
        assert a.content == (b'["Other"]' if gate == "gate0" else b'["none"]')
    if case.startswith(("get_predict", "post_json")):
        body = a.json()
        assert body["aircraft"]["threshold"] == (0.0 if gate == "gate0" else 1.0) and body["box"] is not None
        if gate == "gate1":
            assert body["answer"]["level"] == "none" and body["manufacturer"]["label"] is None
        elif case == "get_predict_other":
            assert body["answer"] == {"level": "manufacturer", "label": "Other",
                                      "text": "another manufacturer (not Airbus or Boeing)", "source": "image"}
            assert body["registration"] is None


@pytest.mark.parametrize("which", ["python", "r"])
def test_r_client_on_the_feature_model(r, feature_pairs, feature_image_dir, parity, which):
    for gate in ("gate0", "gate1"):
        py, rs = feature_pairs[gate]
        rows = run_testthat(r, {"python": py, "r": rs}[which].url, feature_image_dir)
        bad = [row for row in rows if row["failed"] or row["skipped"] or row["error"]]
        ok = parity.check(f"client.testthat.feature_{gate}_{which}_server", bool(rows) and not bad, tests=len(rows),
                          expectations=int(sum(row["nb"] for row in rows)), failing=[row["test"] for row in bad])
        assert ok, (gate, bad)
