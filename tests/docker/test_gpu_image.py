"""The GPU image: built here with CUDA TensorFlow instead of tensorflow-cpu; no GPU here, so it is
run on the CPU fallback, which still exercises its one-worker-per-GPU gunicorn configuration."""

from __future__ import annotations

import json
import re

import pytest
import requests

pytestmark = pytest.mark.docker

PROBE = """
import importlib.metadata as md, json, tensorflow as tf
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
print(json.dumps({"cuda": tf.test.is_built_with_cuda(), "tensorflow": version("tensorflow"),
                  "tensorflow-cpu": version("tensorflow-cpu"), "cudnn": version("nvidia-cudnn-cu12"),
                  "planespotter": version("planespotter")}))
"""


def test_gpu_image_has_cuda_tensorflow_and_not_tensorflow_cpu(docker, gpu_image):
    out = docker("run", "--rm", "--entrypoint", "python", gpu_image, "-c", PROBE, timeout=300).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["cuda"] is True
    assert found["tensorflow"].startswith("2.21.")
    assert found["tensorflow-cpu"] is None
    assert found["cudnn"] is not None
    assert found["planespotter"] is not None
    env = dict(e.split("=", 1) for e in json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Env}}", gpu_image).stdout))
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "WEB_CONCURRENCY" not in env  # one worker per GPU unless set


def test_gpu_image_serves_one_worker_per_gpu(container_factory, gpu_image, container_models, server,
                                             smoke_photos):
    # Two GPU ids announced, none present: two workers, each pinned to its own id; TensorFlow
    # finds no CUDA driver and runs on the CPU, so the answers are the CPU server's.
    c = container_factory(gpu_image, args=("--read-only", "--tmpfs", "/tmp", "-e", "CUDA_VISIBLE_DEVICES=0,1",
                                           "-v", f"{container_models}:/models:ro"))
    c.wait_ready(timeout=300)
    pinned = dict(re.findall(r"worker (\d+): CUDA_VISIBLE_DEVICES=(\S+)", c.logs()))
    assert sorted(pinned.values()) == ["0", "1"], c.logs()[-3000:]
    photo = smoke_photos[3]
    with open(photo, "rb") as f:
        inside = requests.post(c.url + "/predict", files={"image": (photo.name, f, "image/jpeg")}, timeout=120)
    with open(photo, "rb") as f:
        outside = requests.post(server.url + "/predict", files={"image": (photo.name, f, "image/jpeg")}, timeout=120)
    assert inside.status_code == 200, inside.text
    a, b = inside.json(), outside.json()
    assert a["manufacturer"]["label"] == b["manufacturer"]["label"]
    assert a["type"]["label"] == b["type"]["label"]
    assert a["manufacturer"]["probability"] == pytest.approx(b["manufacturer"]["probability"], abs=1e-5)
