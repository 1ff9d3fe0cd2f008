"""GET /names on a freshly trained version answers its own reference image: a test-split render
(never a photo) the version recognises as Airbus or Boeing, chosen at export
(model.training.export.choose_reference), whose tensor checksum the load check uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from client.server import Server
from model import io as mio
from model import preprocessing as pp
from model.cascade import Cascade
from dataset.metadata import write_rows_atomic
from dataset.schema import empty_row

ROOT = Path(__file__).resolve().parents[2]
COLOURS = {"Airbus": (200, 40, 40), "Boeing": (40, 40, 200)}
TYPES = {"Airbus": ("A320", "A388"), "Boeing": ("B738", "B744")}


def _dataset(root: Path, n: int = 24) -> Path:
    """Renders (source ``flightgear-ai``, split by airline) and photos (two web sources, split by
    registration) of red Airbus and blue Boeing "aircraft" (a bar on a light, noisy sky)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for domain in ("render", "photo"):
        for m, colour in COLOURS.items():
            for i in range(n):
                w, h = 160, 120
                img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(150, 256, 3)))
                x0, y0 = (int(v) for v in rng.integers(0, w // 3, 2))
                ImageDraw.Draw(img).rectangle([x0, y0, x0 + w // 2, y0 + h // 4], fill=colour)
                name = f"images/{domain}-{m}-{i:03d}.png"
                img.save(root / name)
                row = empty_row()
                row.update(image_path=name, sha256=hashlib.sha256((root / name).read_bytes()).hexdigest(),
                           manufacturer=m, icao_type=TYPES[m][i % 2], licence="CC0-1.0", width=str(w), height=str(h),
                           source="flightgear-ai" if domain == "render" else ("alpha-web", "beta-web")[i % 2],
                           airline=f"{m} airline {i}" if domain == "render" else "",
                           registration=f"{m}-{i}" if domain == "photo" else "")
                rows.append(row)
    write_rows_atomic(root / "metadata.csv", rows)
    return root


@pytest.fixture(scope="module")
def trained_version(tmp_path_factory) -> Path:
    """A tiny Lite0 version with its localizer (aircraft gate), trained on :func:`_dataset`."""
    from model.backbones.efficientnet_lite import convert as lite
    from model.training import features
    from model.training.config import TrainConfig
    from model.training.train import train

    try:
        weights = str(lite.ensure_weights("lite0", ROOT / "models" / "backbones"))
    except lite.LiteWeightsUnavailableError as e:
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {e}")
    tmp = tmp_path_factory.mktemp("reference-names")
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)  # pixel and feature caches under tmp
    mp.setattr(features, "CACHE_DIR", tmp / "features")
    try:
        cfg = TrainConfig(data=str(_dataset(tmp / "data")), models_dir=str(tmp / "models"),
                          reports_dir=str(tmp / "reports"), backbone="lite0", weights=weights, image_size=64,
                          epochs=20, seed=0, verbose=0, min_type_images=2)
        return train(cfg)
    finally:
        mp.undo()


def test_the_reference_image_is_a_recognised_test_render(trained_version):
    metrics = json.loads((trained_version / mio.METRICS).read_text())
    chosen = metrics["reference_image"]
    assert chosen["image_path"].startswith("images/render-") and chosen["source"] == "flightgear-ai"
    assert chosen["manufacturer"] in ("Airbus", "Boeing")
    data = (trained_version / mio.REFERENCE_IMAGE).read_bytes()
    assert data != pp.reference_png()
    meta = json.loads((trained_version / mio.PREPROCESSING).read_text())
    assert pp.tensor_checksum(data, pp.PreprocessingSpec.from_dict(meta)) == meta["reference_sha256"]
    assert mio.reference_image_bytes(trained_version) == data
    Cascade.load(trained_version)  # the load check uses the stored image's checksum


def test_get_names_answers_airbus_or_boeing(trained_version):
    srv = Server(trained_version, env={"PLANESPOTTER_DEFAULT_IMAGE": ""})  # no default image: reference.png
    try:
        srv.wait_ready()
        r = requests.get(srv.url + "/names", timeout=60)
    finally:
        srv.stop()
    assert r.status_code == 200, r.text
    assert r.json() in (["Airbus"], ["Boeing"])
