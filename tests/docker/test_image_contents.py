"""What the images are made of: configuration, and what must never be in a layer (the build's CA
secret, CA environment, pip caches, wheels, compilers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest


pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# The CAs that update-ca-certificates adds to the system bundle beyond Debian's (on CI: the
# TLS-intercepting proxy's). The builds get the combined bundle as the BuildKit secret `ca`.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_ENV = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
COMPILERS = {"gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12", "tcc"}


def local_ca_markers() -> list[str]:
    """One full base64 line from the middle of each local CA certificate (unique to that CA)."""
    markers = []
    for crt in sorted(LOCAL_CA_DIR.rglob("*.crt")):
        for block in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----",
                                crt.read_text(errors="replace"), re.S):
            lines = [ln.strip() for ln in block.split() if len(ln.strip()) == 64]
            if lines:
                markers.append(lines[len(lines) // 2])
    return markers


def image_config(docker, image: str) -> dict:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)


def layer_dirs(docker, image: str) -> list[Path]:
    """The image's layers as directories on the engine's disk (overlay2 diff folders, each the
    content of one layer, deletions as whiteouts)."""
    driver = json.loads(docker("image", "inspect", "--format", "{{json .GraphDriver}}", image).stdout)
    assert driver["Name"] == "overlay2", driver
    data = driver["Data"]
    dirs = [Path(p) for p in (data.get("LowerDir") or "").split(":") if p] + [Path(data["UpperDir"])]
    assert all(d.is_dir() for d in dirs), "layer folders not readable here (run as root)"
    return dirs


@pytest.mark.parametrize("image_fixture", ["cpu_image", "gpu_image"])
def test_image_configuration(request, docker, image_fixture):
    image = request.getfixturevalue(image_fixture)
    cfg = image_config(docker, image)
    assert cfg["User"] == "10001:10001"
    assert "8000/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][-1] == "/healthz"
    assert cfg["Entrypoint"] == ["/opt/planespotter/entrypoint.sh"] and cfg["Cmd"] == ["serve"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PLANESPOTTER_MODEL_DIR"] == "/models/latest"
    assert not set(CA_ENV) & set(env), "a CA variable was left in the image environment"


@pytest.mark.parametrize("image_fixture", ["cpu_image", "gpu_image"])
def test_no_ca_secret_cache_wheel_or_compiler_in_any_layer(request, docker, base_image, image_fixture):
    image = request.getfixturevalue(image_fixture)
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    for needle in ("BEGIN CERTIFICATE", "/run/secrets", *(f"{v}=" for v in CA_ENV)):
        assert needle not in history, f"{needle!r} in the image history"

    dirs = layer_dirs(docker, image)
    base = set(layer_dirs(docker, base_image))
    own = [d for d in dirs if d not in base]  # the layers this project's Dockerfile added
    assert own and len(own) < len(dirs)
    bad = []
    for layer in own:
        for root, _subdirs, files in os.walk(layer):
            rel = "/" + os.path.relpath(root, layer) if root != str(layer) else "/"
            for name in files:
                path = f"{rel.rstrip('/')}/{name}"
                if (path.startswith(("/run/secrets", "/root/.cache", "/home/planespotter/.cache"))
                        or name.endswith(".whl")
                        or (name in COMPILERS and re.search(r"/s?bin$", rel))):
                    bad.append(path)
    assert not bad, f"found in {image}'s own layers: {bad[:20]}"

    markers = local_ca_markers()
    if markers:  # the local CA's own bytes, anywhere in any file of any layer (base included)
        grep = subprocess.run(["grep", "-rlF", "--devices=skip", *sum((["-e", m] for m in markers), []),
                               *map(str, dirs)], capture_output=True, text=True)
        assert grep.returncode == 1, f"local CA found in {image}'s layers: {grep.stdout[:2000]}{grep.stderr[:500]}"


OCR_PROBE = """
import json, cv2
from PIL import Image, ImageDraw, ImageFont
from rapidocr_onnxruntime import RapidOCR
from model.reader import RegistrationReader
RapidOCR()
img = Image.new("RGB", (1200, 500), "white")
ImageDraw.Draw(img).text((150, 180), "D-ABYI", fill="black", font=ImageFont.load_default(size=120))
print(json.dumps({"cv2": cv2.__version__, "lines": RegistrationReader(registry=None).lines(img)}))
"""


@pytest.mark.parametrize("image_fixture", ["cpu_image", "gpu_image"])
def test_registration_reader_ocr_loads_in_the_image(request, docker, image_fixture):
    """opencv-python (rapidocr-onnxruntime's) finds libGL.so.1 and libglib-2.0 in the slim image,
    the PP-OCR models ship in the wheel (no download: run without a network), and the reader reads
    a line, as the server runs it: non-root, read-only root filesystem, tmpfs /tmp."""
    image = request.getfixturevalue(image_fixture)
    out = docker("run", "--rm", "--label", "org.planespotter.test=1", "--network", "none", "--read-only",
                 "--tmpfs", "/tmp", "--entrypoint", "python", image, "-c", OCR_PROBE, timeout=300).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["cv2"].startswith("4.")
    assert [text for text, _score, _box in found["lines"]] == ["D-ABYI"], found
