"""The backbone registry (model/backbones/) and the contract every backbone keeps.

Contract: float32 images in [0, 1] ``(n, H, W, 3)`` → pooled features ``(n, feature_dim)`` with
the backbone's own rescaling inside the model; named cuts with ``upper(lower(x)) == build(x)``;
a clear error when pretrained weights are missing offline. Real Keras models at 64 px; the Lite
backbones use the converted ImageNet weights (skipped when they can be neither found nor
converted), VGG16 a weights file of random numbers written here (no internet for Keras' file).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import backbones
from model.backbones.efficientnet_lite import convert as C
from model.backbones.efficientnet_lite import network as L
from model.training import features
from model import preprocessing as pp
from model.backbones.base import WeightsUnavailableError

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64  # small inputs keep the forward passes cheap; every backbone accepts >= 32 px


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> dict[str, str]:
    """A weights file per backbone: the converted Lite files, a random VGG16 no-top file."""
    import keras

    out = {}
    for name in ("lite0", "lite2"):
        try:
            out[name] = str(C.ensure_weights(name, ROOT / "models" / "backbones"))
        except C.LiteWeightsUnavailableError as e:
            pytest.skip(f"{name} weights unavailable: {e}")
    keras.utils.set_random_seed(0)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path_factory.mktemp("vgg16") / "vgg16_random_notop.weights.h5"
    vgg.save_weights(str(path))
    out["vgg16"] = str(path)
    return out


def _images(n: int = 2, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, size, size, 3)).astype(np.float32)


# ------------------------------------------------------------------ registry


def test_registry_lists_one_backbone_per_module():
    assert backbones.names() == ("lite0", "lite2", "vgg16")
    assert backbones.feature_names() == ("lite0", "lite2", "vgg16-frozen") == features.FEATURE_BACKBONES
    modules = {p.stem for p in (ROOT / "model" / "backbones").glob("*.py")
               if p.stem not in backbones.NOT_ENTRIES and not p.stem.startswith("_")}
    assert modules == set(backbones.names())  # a new backbone is one new file
    assert backbones.NOT_ENTRIES == {"base", "compact"}
    assert backbones.get("vgg16-frozen") is backbones.get("vgg16")
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet'.*lite2"):
        backbones.get("resnet")


def test_interface_attributes():
    expected = {"lite0": (224, 1280, "block5c_add"), "lite2": (260, 1280, "block5d_add"),
                "vgg16": (224, 512, "block4_pool")}
    for bb in backbones.all_backbones():
        assert (bb.default_image_size, bb.feature_dim, bb.default_cut) == expected[bb.name]
        assert bb.description and bb.weights_source.origin and bb.weights_source.env_var
        assert bb.default_cut in bb.cuts
        json.dumps(bb.to_dict())  # JSON-ready, for reports
    lite0, lite2 = backbones.get("lite0"), backbones.get("lite2")
    assert {"block4c_add", "block5c_add"} <= set(lite0.cuts)
    assert {"block4d_add", "block5d_add"} <= set(lite2.cuts)
    src = lite2.weights_source
    assert (src.file, src.sha256) == ("efficientnet-lite2-9656183e.pth", L.VARIANTS["lite2"].pth_sha256)
    assert src.converted == "models/backbones/efficientnet_lite2_imagenet.weights.h5"
    assert (src.env_var, src.make_target) == ("PLANESPOTTER_LITE2_WEIGHTS", "make backbones")
    assert backbones.get("vgg16").weights_source.env_var == "PLANESPOTTER_VGG16_WEIGHTS"


def test_registry_imports_no_keras():
    code = ("import sys; from model import backbones; from model.training import features; backbones.names(); "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bad_cut_and_input_shape_raise():
    bb = backbones.get("lite0")
    with pytest.raises(ValueError, match="has no cut 'block5d_add'"):
        bb.check_cut("block5d_add")  # Lite2's name, not Lite0's
    with pytest.raises(ValueError, match=">= 32"):
        bb.build((16, 16, 3), weights="none")
    with pytest.raises(ValueError, match="pooling"):
        bb.build((SIZE, SIZE, 3), weights="none", pooling="max")


# ------------------------------------------------------------------ the contract


def _reference_features(name: str, model, x01: np.ndarray, weights: str) -> np.ndarray:
    """The same network fed with its own normalisation of 0-255 pixels, built independently."""
    import keras

    if name.startswith("lite"):
        ref = L.build_efficientnet_lite(name, (SIZE, SIZE, 3), weights=weights, pooling="avg")
        return np.asarray(ref.predict_on_batch(L.preprocess_lite0(x01 * 255.0)))
    ref = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(SIZE, SIZE, 3), pooling="avg")
    return np.asarray(ref.predict_on_batch(keras.applications.vgg16.preprocess_input(x01 * 255.0)))


@pytest.mark.parametrize("name", ["lite0", "lite2", "vgg16"])
def test_build_takes_unit_range_images_and_pools(name, weights_files):
    bb = backbones.get(name)
    x = _images()
    model = bb.build((SIZE, SIZE, 3), weights=weights_files[name])
    out = np.asarray(model.predict_on_batch(x))
    assert out.shape == (2, bb.feature_dim) and out.dtype == np.float32
    assert model.input_shape == (None, SIZE, SIZE, 3)
    # the rescaling is inside: [0, 1] in, the same features as the bare network on its own input
    np.testing.assert_allclose(out, _reference_features(name, model, x, weights_files[name]), rtol=1e-4, atol=1e-4)
    fmap = bb.build((None, None, 3), weights="none", pooling=None)
    assert np.asarray(fmap.predict_on_batch(x)).shape[:3] == (2, SIZE // 32, SIZE // 32)


@pytest.mark.parametrize("name", ["lite0", "lite2", "vgg16"])
def test_upper_of_lower_equals_build(name, weights_files):
    bb = backbones.get(name)
    x = _images(seed=1)
    shape = (SIZE, SIZE, 3)
    # separate builds from the same weights file (eager calls: no tracing, faster on tiny inputs)
    pooled = np.asarray(bb.build(shape, weights_files[name])(x, training=False))
    lower = bb.build_lower(shape, None, weights_files[name])
    upper = bb.build_upper(shape, None, weights_files[name])
    maps = np.asarray(lower(x, training=False))
    assert lower.get_layer(bb.default_cut).output.shape[1:] == maps.shape[1:] == tuple(upper.input_shape[1:])
    np.testing.assert_allclose(np.asarray(upper(maps, training=False)), pooled, rtol=1e-4, atol=1e-4)
    # every cut is a clean boundary of the network (one random build, split at each cut)
    full = bb.build(shape, weights="none")
    expected = np.asarray(full(x, training=False))
    for cut in bb.cuts:
        lower, upper = bb.split(full, cut)
        np.testing.assert_allclose(np.asarray(upper(lower(x, training=False), training=False)), expected,
                                   rtol=1e-4, atol=1e-4)


def test_lite_cut_shapes():
    shape = (224, 224, 3)
    assert backbones.get("lite0").build_lower(shape, weights="none").output_shape == (None, 14, 14, 112)
    assert backbones.get("lite2").build_lower(weights="none").output_shape == (None, 17, 17, 120)
    assert backbones.get("lite2").build_lower(shape, "block4d_add", weights="none").output_shape == (None, 14, 14, 88)


# ------------------------------------------------------------------ weights


def test_lite_weights_resolution(weights_files, monkeypatch, tmp_path):
    bb = backbones.get("lite2")
    monkeypatch.delenv("PLANESPOTTER_LITE2_WEIGHTS", raising=False)
    assert bb.resolve_weights("none") is None
    assert bb.resolve_weights(weights_files["lite2"]) == weights_files["lite2"]
    monkeypatch.setenv("PLANESPOTTER_LITE2_WEIGHTS", weights_files["lite2"])
    assert bb.resolve_weights(None) == bb.resolve_weights("imagenet") == weights_files["lite2"]
    monkeypatch.setenv("PLANESPOTTER_LITE2_WEIGHTS", str(tmp_path / "nowhere.weights.h5"))
    with pytest.raises(WeightsUnavailableError, match="PLANESPOTTER_LITE2_WEIGHTS=.*nowhere.weights.h5 is not a file"):
        bb.resolve_weights(None)
    with pytest.raises(WeightsUnavailableError, match="lite2 weights file not found"):
        bb.resolve_weights(str(tmp_path / "other.weights.h5"))


@pytest.mark.parametrize("name", ["lite0", "lite2"])
def test_missing_lite_weights_offline_name_the_make_target_and_variable(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no models/backbones/ here
    monkeypatch.delenv(f"PLANESPOTTER_{name.upper()}_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # no converter either
    bb = backbones.get(name)
    with pytest.raises(WeightsUnavailableError) as err:
        bb.build((SIZE, SIZE, 3))
    msg = str(err.value)
    for needle in ("make backbones", f"PLANESPOTTER_{name.upper()}_WEIGHTS", "--weights none",
                   f"models/backbones/efficientnet_{name}_imagenet.weights.h5"):
        assert needle in msg, msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_vgg16_weights_from_the_environment(weights_files, monkeypatch, tmp_path):
    bb = backbones.get("vgg16")
    monkeypatch.setenv("PLANESPOTTER_VGG16_WEIGHTS", weights_files["vgg16"])
    assert bb.resolve_weights(None) == weights_files["vgg16"]
    assert bb.resolve_weights("none") is None
    monkeypatch.setenv("PLANESPOTTER_VGG16_WEIGHTS", str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsUnavailableError, match="VGG16 weights file not found"):
        bb.resolve_weights("imagenet")


# ------------------------------------------------------------------ features.py over the registry


def test_features_cache_and_cut_for_lite2(weights_files, monkeypatch, tmp_path):
    import pandas as pd

    monkeypatch.setattr(features, "CACHE_DIR", tmp_path / "features")
    spec = pp.PreprocessingSpec(SIZE, SIZE)
    pixels = (_images(4) * 255).astype(np.uint8)
    df = pd.DataFrame({"sha256": [f"{i:064x}" for i in range(4)], "abs_path": [""] * 4})
    w = weights_files["lite2"]
    pooled = features.compute("lite2", pixels, df, spec, weights=w)
    assert pooled.shape == (4, 1280)
    cut = features.default_cut("lite2")
    maps = features.compute("lite2", pixels, df, spec, weights=w, cut=cut)
    assert cut == "block5d_add" and maps.shape == (4, SIZE // 16, SIZE // 16, 120)
    # maps are cached as float16: the pooled features through the upper part agree to that precision
    again = features.pooled_from_cut(maps, spec, weights=w, backbone="lite2", cut=cut)
    np.testing.assert_allclose(again, pooled, rtol=2e-2, atol=2e-2)
    assert features.default_cut("lite0") == features.LITE0_CUT == "block5c_add"
    assert features.default_cut("vgg16-frozen") == "block4_pool"


# ------------------------------------------------------------------ train end to end, load without model/


def _tiny_dataset(root: Path, n_per_class: int = 20, size: int = 48) -> Path:
    """40 small JPEGs in the dataset/schema.py CSV schema: red-ish 'Airbus', blue-ish 'Boeing',
    two ICAO types each, fixed splits 12/4/4 per manufacturer."""
    import hashlib

    from PIL import Image, ImageDraw

    from dataset.metadata import write_rows_atomic
    from dataset.schema import empty_row

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for m, (colour, types) in {"Airbus": ((200, 40, 40), ("A320", "A388")),
                               "Boeing": ((40, 40, 200), ("B738", "B744"))}.items():
        for i in range(n_per_class):
            img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(150, 256, 3)))
            d = ImageDraw.Draw(img)
            x0, y0 = (int(v) for v in rng.integers(0, size // 3, 2))
            d.rectangle([x0, y0, x0 + size // 2, y0 + size // 4 + 4 * (i % 2)], fill=colour)
            path = root / "images" / f"{m}_{i:02d}.jpg"
            img.save(path, quality=90)
            split = "train" if i < 12 else "validation" if i < 16 else "test"
            row = empty_row()
            row.update(image_path=f"images/{path.name}", sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                       manufacturer=m, icao_type=types[i % 2], airline=f"{m} airline {i % 5}", source="test",
                       licence="CC0-1.0", width=str(size), height=str(size), split=split)
            rows.append(row)
    write_rows_atomic(root / "metadata.csv", rows)
    return root


@pytest.mark.slow
def test_train_lite2_fine_tune_and_load_without_model_package(weights_files, tmp_path, monkeypatch):
    from model.training.config import TrainConfig
    from model.training.train import train

    data = _tiny_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # pixel and feature caches under tmp_path
    cfg = TrainConfig(data=str(data), models_dir=str(tmp_path / "models"), reports_dir=str(tmp_path / "reports"),
                      backbone="lite2", weights=weights_files["lite2"], image_size=SIZE, epochs=1, seed=0,
                      verbose=0, fine_tune=True, min_type_images=2)
    version = train(cfg)
    metrics = json.loads((version / "metrics.json").read_text())
    assert metrics["config"]["backbone"] == "lite2" and metrics["real"]["n_test"] == 8  # source "test": photos
    # the localizer is Lite0 whatever the classifier's backbone (its own ImageNet head, not lite2's file)
    assert {p.name for p in version.glob("*.keras")} == {"manufacturer.keras", "type_Airbus.keras",
                                                        "type_Boeing.keras", "localizer.keras"}
    # R (reticulate) loads the .keras files with plain Keras in a process that never imports model/
    x = (_images(3, seed=2) * 255).round() / 255
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras\n"
            "out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    m = keras.models.load_model(name, compile=False)\n"
            "    out[name] = np.asarray(m.predict_on_batch(np.load('x.npy')))\n"
            "assert not [k for k in sys.modules if k == 'model' or k.startswith('model.')], 'model/ imported'\n"
            "np.savez('out.npz', **{k.replace('/', '_'): v for k, v in out.items()})\n")
    files = [str(version / "manufacturer.keras"), str(version / "type_Boeing.keras")]
    r = subprocess.run([sys.executable, "-c", code, *files], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout[-1000:], r.stderr[-3000:])
    fresh = np.load(tmp_path / "out.npz")
    from model import io as mio

    for f in files:
        ours = np.asarray(mio.load_keras(Path(f)).predict_on_batch(x))
        theirs = fresh[f.replace("/", "_")]
        assert theirs.shape == ours.shape and theirs.shape[0] == 3
        np.testing.assert_allclose(theirs.sum(axis=1), 1.0, atol=1e-5)  # calibrated probabilities
        np.testing.assert_allclose(theirs, ours, atol=1e-5)


# ------------------------------------------------------------------ bench-backbones


def test_bench_backbones_writes_a_report(tmp_path):
    from model.bench import backbones as bench_backbones

    out = tmp_path / "bench" / "backbones.json"
    assert bench_backbones.main(["--runs", "lite0:64", "vgg16:32", "--batch-size", "2", "--batches", "2",
                                 "--weights", "none", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["backbone"], r["image_size"]) for r in report["runs"]] == [("lite0", 64), ("vgg16", 32)]
    for r in report["runs"]:
        assert r["images_per_s"] > 0 and len(r["batch_seconds"]) == 2 and r["batch_size"] == 2
    assert report["machine"]["cpu_count"] >= 1
    assert bench_backbones.parse_run("lite2") == ("lite2", 260)
    with pytest.raises(ValueError, match="unknown backbone"):
        bench_backbones.parse_run("resnet:224")
