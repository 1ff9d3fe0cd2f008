"""Training smoke test: a small real render set, a real Keras cascade, learning well above chance.

Renders two very different airliners (Airbus A380-800 vs Boeing 717-200, held-out airlines in the
test split) with the real FlightGear data, trains the cascade on EfficientNet-Lite0 ImageNet
features (fixed seeds) and checks the held-out manufacturer accuracy, the exported version and
the feature cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_render(tmp_path_factory) -> Path:
    from synth.fetch import fetch, is_unpacked

    fleet = ROOT / "data" / "external" / "flightgear-data-ai"
    if not is_unpacked(fleet):
        fetch(ROOT / "data" / "external")
    out = tmp_path_factory.mktemp("render")
    r = subprocess.run([sys.executable, "-m", "synth", "render", "--fleet", str(fleet), "--out", str(out),
                        "--types", "A388,B712", "--per-class", "100", "--size", "128", "--seed", "0",
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def lite0_weights() -> Path:
    from model.backbones.efficientnet_lite import convert as lite

    try:
        return lite.ensure_lite0_weights(ROOT / "models" / "backbones")
    except lite.Lite0WeightsUnavailableError as e:
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {e}")


@pytest.mark.parametrize("fine_tune", [False, True], ids=["head", "fine-tune"])
def test_training_learns_on_held_out_liveries(small_render, lite0_weights, tmp_path, monkeypatch, fine_tune):
    from model.training import features
    from model.training.config import TrainConfig
    from model.training.train import train

    monkeypatch.setattr(features, "CACHE_DIR", tmp_path / "features")
    cfg = TrainConfig(data=str(small_render), models_dir=str(tmp_path / "models"),
                      reports_dir=str(tmp_path / "reports"), backbone="lite0", image_size=128,
                      epochs=3 if fine_tune else 40, seed=0, verbose=0, fine_tune=fine_tune)
    version = train(cfg)
    metrics = json.loads((version / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n_test"] >= 20
    assert test["manufacturer_accuracy"] >= 0.7, test  # chance is 0.5 (measured: 0.79)
    assert (tmp_path / "models" / "latest").resolve() == version.resolve()
    assert (tmp_path / "reports" / "figures" / "training_joint.png").is_file()
    card = (version / "model_card.md").read_text()
    assert "GPL-2.0-or-later" in card and "manufacturer accuracy" in card

    if fine_tune:
        # the confidence rule added to the trained version, without retraining (python -m model confidence)
        r = subprocess.run([sys.executable, "-m", "model", "confidence", "--model-dir", str(version),
                            "--novelty-quantile", "90", "--novelty-k", "5", "--views"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr[-3000:]
        derived = Path(r.stdout.strip().splitlines()[-1])
        assert derived != version and (tmp_path / "models" / "latest").resolve() == derived.resolve()
        from model.pipeline import Pipeline

        pipe = Pipeline.load(derived)
        assert pipe.stages[-2:] == ["novelty", "views"] and pipe.cascade.bank.shape[1] == 1280
        rule = json.loads((derived / "labels.json").read_text())["confidence"]
        assert rule["views"] is True and rule["k"] == 5 and 0 < rule["novelty_threshold"] < 2
        answers = pipe.predict(sorted(small_render.rglob("*.png"))[:6])
        assert all(a["unsure"] == bool(a["unsure_reasons"]) for a in answers)
        assert json.loads((derived / "metrics.json").read_text())["derived_from"] == version.name
        bad = subprocess.run([sys.executable, "-m", "model", "confidence", "--model-dir", str(version),
                              "--novelty-quantile", "101"], capture_output=True, text=True, cwd=tmp_path)
        assert bad.returncode == 2 and "percentile" in bad.stderr
        return
    # the same data again: every feature comes from the cache, the model is the same
    stats: dict = {}
    from model import data as mdata
    from model import preprocessing as pp

    df = mdata.read_metadata(small_render)
    spec = pp.PreprocessingSpec(128, 128, resize="bilinear")
    pixels = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist(),
                               cache_dir=tmp_path / "pixels")
    features.compute("lite0", pixels, df, spec, weights=str(lite0_weights), stats=stats)
    assert stats["misses"] == len(df) and stats["hits"] == 0  # other weights id → a new cache
    again: dict = {}
    features.compute("lite0", pixels, df, spec, weights=str(lite0_weights), stats=again)
    assert again["hits"] == len(df) and again["misses"] == 0
