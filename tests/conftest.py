"""Shared fixtures: paths to ../shared data, a tiny real Keras cascade, a real gunicorn server."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.smoke import Server

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
SMOKE_DIR = SHARED / "data" / "smoke-airliners"


@pytest.fixture(scope="session")
def smoke_photos() -> list[Path]:
    """The 12 real airliner photos in ../shared/data/smoke-airliners (skip if absent)."""
    photos = sorted(SMOKE_DIR.glob("*.jpg"))
    if not photos:
        pytest.skip(f"no smoke photos in {SMOKE_DIR}")
    return photos


def build_tiny_cascade(models_dir: Path, size: int = 32, seed: int = 0) -> Path:
    """A real (random-weights) cascade version: compact CNNs at ``size`` px, 2 manufacturers,
    each with 2 ICAO types and one whole-family leaf (A350 / B777 family), type threshold 0.34
    (so its near-uniform answers land at type level for some images, family level for others).
    Returns the version folder."""
    import keras

    from model import architectures as arch
    from model import io as mio
    from model import preprocessing as pp
    from model.train import calibrated

    keras.utils.set_random_seed(seed)
    spec = pp.PreprocessingSpec(height=size, width=size)
    labels = {"manufacturer": ["Airbus", "Boeing"],
              "types": {"Airbus": ["A320", "A388", "A350 family"], "Boeing": ["B738", "B744", "B777 family"]},
              "families": {"Airbus": {"A320": "A320", "A388": "A380", "A350 family": "A350"},
                           "Boeing": {"B738": "B737", "B744": "B747", "B777 family": "B777"}},
              "type_threshold": 0.34}

    def tiny(n, name):
        return calibrated(arch.build_compact_cnn(spec.input_shape, n, width=4, name=name), 1.0, name)

    stage1 = tiny(2, "manufacturer")
    stage2 = {m: tiny(len(t), f"type_{m}") for m, t in labels["types"].items()}
    metrics = {"test": {"manufacturer_accuracy": 0.5}, "calibration": {}}
    return mio.save_version(models_dir, stage1, stage2, labels, spec, metrics, "# tiny test model\n",
                            version="20000101T000000Z")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Session-wide tiny model version folder (``<tmp>/models/20000101T000000Z``)."""
    return build_tiny_cascade(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    """gunicorn serving the tiny model, with IMAGE_ROOT = the smoke photo folder."""
    srv = Server(tiny_model_dir, env={"PLANESPOTTER_IMAGE_ROOT": str(SMOKE_DIR),
                                      "PLANESPOTTER_DEFAULT_IMAGE": "boeing_777_turkish.jpg"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
