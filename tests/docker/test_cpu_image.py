"""The CPU image, run for real: compose with the model volume, the baked-model image, the pipeline
commands, and graceful shutdown. Answers are compared with the same server run outside a container
(the ``server`` fixture of tests/conftest.py, same tiny model)."""

from __future__ import annotations

import csv
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from urllib3.filepost import encode_multipart_formdata

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.docker


def predict(url: str, photo: Path) -> dict:
    with open(photo, "rb") as f:
        r = requests.post(url + "/predict", files={"image": (photo.name, f, "image/jpeg")}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def without_timing(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timing_ms"}


def test_compose_service_becomes_ready(compose_url, tiny_model_dir):
    assert requests.get(compose_url + "/healthz", timeout=5).status_code == 200
    ready = requests.get(compose_url + "/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["model_version"] == tiny_model_dir.name


def test_predict_in_container_equals_server_outside(compose_url, server, smoke_photos):
    photo = smoke_photos[0]
    inside, outside = predict(compose_url, photo), predict(server.url, photo)
    assert inside["manufacturer"]["label"] in ("Airbus", "Boeing")
    assert without_timing(inside) == without_timing(outside)


def names_is_reference_manufacturer(url: str, model_dir: Path) -> None:
    """``GET /names`` answers with no setting: the manufacturer of the version's reference.png."""
    r = requests.get(url + "/names", timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.text
    ref = requests.post(url + "/predict", data=(model_dir / "reference.png").read_bytes(),
                        headers={"Content-Type": "image/png"}, timeout=60)
    assert r.json() == [ref.json()["manufacturer"]["label"]]


def test_names_answers_without_a_default_image_setting(compose_url, tiny_model_dir):
    names_is_reference_manufacturer(compose_url, tiny_model_dir)


def test_server_runs_as_non_root(docker, compose_container):
    # Every process of the container (gunicorn master = PID 1, its workers) as seen by the host.
    rows = docker("top", compose_container, "-eo", "pid,uid,args").stdout.splitlines()[1:]
    assert any("gunicorn" in r for r in rows), rows
    assert all(int(r.split()[1]) == 10001 for r in rows), rows
    status = docker("exec", compose_container, "cat", "/proc/1/status").stdout
    assert [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")] == [["10001"] * 4]


def test_read_only_root_filesystem_with_tmpfs(docker, compose_url, compose_container):
    host_config = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", compose_container).stdout)
    assert host_config["ReadonlyRootfs"] is True
    assert "/tmp" in host_config["Tmpfs"]
    for path in ("/opt/venv/probe", "/home/planespotter/probe", "/models/probe"):
        denied = docker("exec", compose_container, "touch", path, check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    docker("exec", compose_container, "touch", "/tmp/probe")
    # ... and the server works in that configuration (readiness reached, predictions served).
    assert requests.get(compose_url + "/readyz", timeout=5).status_code == 200


def test_baked_model_image_serves_without_a_volume(docker, container_factory, baked_image, server, smoke_photos,
                                                   tiny_model_dir):
    c = container_factory(baked_image, args=("--read-only", "--tmpfs", "/tmp"))
    c.wait_ready()
    assert json.loads(docker("inspect", "--format", "{{json .Mounts}}", c.id).stdout) in ([], None)
    photo = smoke_photos[1]
    assert without_timing(predict(c.url, photo)) == without_timing(predict(server.url, photo))
    names_is_reference_manufacturer(c.url, tiny_model_dir)  # the baked version carries reference.png


def test_docker_stop_lets_an_in_flight_request_finish(container_factory, baked_image, server, smoke_photos):
    c = container_factory(baked_image, args=("--read-only", "--tmpfs", "/tmp"))
    c.wait_ready()
    photo = smoke_photos[2]
    body, content_type = encode_multipart_formdata({"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    url = urlsplit(c.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])  # a slow client: half the upload is on its way
    time.sleep(1)  # let the worker accept the connection (it polls at least once a second)
    stopper = subprocess.Popen([os.environ["DOCKER"], "stop", "-t", "40", c.id],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while "Handling signal: term" not in c.logs():
        assert time.monotonic() < deadline, c.logs()[-3000:]
        time.sleep(0.2)
    conn.send(body[len(body) // 2:])  # the rest, after SIGTERM reached gunicorn
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 200, answer
    assert without_timing(answer) == without_timing(predict(server.url, photo))
    assert stopper.wait(timeout=60) == 0, stopper.stderr.read()
    state = c.state()
    assert not state["Running"]
    assert state["ExitCode"] == 0, c.logs()[-3000:]  # a graceful exit, not SIGKILL (137)


def test_score_command_in_the_image_equals_score_outside(docker, baked_image, container_models, smoke_photos, tmp_path):
    photos = smoke_photos[0].parent
    out_dir = Path(tempfile.mkdtemp(prefix="planespotter-score-"))
    try:
        out_dir.chmod(0o777)  # written by the image's uid 10001
        docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", f"{photos}:/images:ro",
               "-v", f"{out_dir}:/out", baked_image,
               "score", "--images", "/images", "--out", "/out/scores.csv", "--no-progress", timeout=300)
        inside = list(csv.DictReader(open(out_dir / "scores.csv", newline="")))
    finally:
        subprocess.run(["rm", "-rf", str(out_dir)], check=False)
    subprocess.run([sys.executable, "-m", "model", "score", "--images", str(photos), "--out",
                    str(tmp_path / "scores.csv"), "--model-dir", str(container_models / "latest"),
                    "--no-progress"], cwd=REPO, check=True, capture_output=True, timeout=300)
    outside = list(csv.DictReader(open(tmp_path / "scores.csv", newline="")))
    assert len(inside) == len(smoke_photos)
    assert inside == outside
