"""``GET /names`` out of the box: with no default image configured, the R plumber server and our
gunicorn server both classify the model version's own reference image and answer the same
bytes (status, Content-Type, body)."""

from __future__ import annotations

import json

import pytest
import requests
from rparity import SMOKE_DIR
from rserver import RServer

from client.server import Server
from model import io as mio

#: a fresh configuration: no PLANESPOTTER_DEFAULT_IMAGE ("" counts as unset on both sides)
FRESH_ENV = {"PLANESPOTTER_IMAGE_ROOT": str(SMOKE_DIR), "PLANESPOTTER_DEFAULT_IMAGE": ""}


@pytest.fixture(scope="module")
def fresh_servers(parity_model_dir):
    """Our server and the R server on the parity model, neither given a default image."""
    py = Server(parity_model_dir, env=FRESH_ENV)
    r = RServer(parity_model_dir, env=FRESH_ENV)
    try:
        py.wait_ready()
        r.wait_ready()
        yield py, r
    finally:
        py.stop()
        r.stop()


def test_names_without_default_image_same_bytes(fresh_servers, parity_model_dir, parity):
    py, r = fresh_servers
    a = requests.get(py.url + "/names", timeout=120)
    b = requests.get(r.url + "/names", timeout=120)
    # the answer is the manufacturer of the version's reference image
    reference = mio.reference_image_bytes(parity_model_dir)
    p = requests.post(py.url + "/predict", data=reference, headers={"Content-Type": "image/png"}, timeout=120)
    expected = json.dumps([p.json()["manufacturer"]["label"]]).encode()
    ok = parity.check("http.names_no_default_image",
                      a.status_code == b.status_code == 200 and a.content == b.content == expected
                      and a.headers.get("Content-Type") == b.headers.get("Content-Type") == "application/json",
                      status=[a.status_code, b.status_code], body=[a.text, b.text], expected=expected.decode(),
                      content_type=[a.headers.get("Content-Type"), b.headers.get("Content-Type")])
    assert ok, (a.status_code, b.status_code, a.content, b.content, expected)
