"""The R recipe's exact parameter counts, routing/unsure logic, calibration, model-version checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model import io as mio
from model import metrics
from model import preprocessing as pp
from model.cascade import Cascade
from model.training.calibration import fit_temperature


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def test_r_original_recipe_has_the_r_summary_counts():
    from model.backbones.vgg16 import build_r_original

    m = build_r_original(weights=None)
    assert m.count_params() == 16_812_353
    assert _count(m.trainable_weights) == 16_552_193
    assert _count(m.non_trainable_weights) == 260_160
    assert m.input_shape == (None, 150, 150, 3) and m.output_shape == (None, 1)
    vgg = m.layers[0]
    assert [l.name for l in vgg.layers if l.trainable and l.weights][0] == "block3_conv1"


class _Const:
    """A stand-in Keras-like model returning fixed probabilities (routing logic only)."""

    def __init__(self, rows):
        self.rows = np.asarray(rows, np.float32)
        self.calls = []

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        return np.repeat(self.rows[:1], len(x), 0) if len(self.rows) == 1 else self.rows[: len(x)]


def _cascade(p_m, threshold=0.6):
    labels = {"manufacturer": ["Airbus", "Boeing"], "types": {"Airbus": ["A320", "A388"], "Boeing": ["B738", "B744"]}}
    stage2 = {"Airbus": _Const([[0.9, 0.1]]), "Boeing": _Const([[0.3, 0.7]])}
    return Cascade(_Const(p_m), stage2, labels, pp.PreprocessingSpec(16, 16), "v", threshold), stage2


def test_confident_routing_uses_only_one_branch():
    c, stage2 = _cascade([[0.9, 0.1]])
    (res,) = c.predict(np.zeros((1, 16, 16, 3), np.float32), top_k=2)
    assert res["unsure"] is False
    assert res["manufacturer"] == {"label": "Airbus", "probability": pytest.approx(0.9)}
    assert res["type"]["label"] == "A320"
    assert res["type"]["joint_probability"] == pytest.approx(0.9 * 0.9)
    assert stage2["Boeing"].calls == []  # not evaluated
    assert [t["type"] for t in res["top_k"]] == ["A320", "A388"]


def test_below_threshold_is_unsure_with_both_branches_joint():
    c, stage2 = _cascade([[0.55, 0.45]])
    (res,) = c.predict(np.zeros((1, 16, 16, 3), np.float32), top_k=4)
    assert res["unsure"] is True
    assert [b["manufacturer"] for b in res["branches"]] == ["Airbus", "Boeing"]
    assert res["branches"][0]["joint_probability"] == pytest.approx(0.55 * 0.9)
    assert res["branches"][1]["type"] == "B744"
    assert res["branches"][1]["joint_probability"] == pytest.approx(0.45 * 0.7)
    joint = [t["probability"] for t in res["top_k"]]
    assert joint == sorted(joint, reverse=True) and len(joint) == 4
    assert sum(joint) == pytest.approx(1.0)


def test_threshold_is_configurable():
    c, _ = _cascade([[0.55, 0.45]], threshold=0.5)
    assert c.predict(np.zeros((1, 16, 16, 3), np.float32))[0]["unsure"] is False


def test_temperature_scaling_improves_ece_on_overconfident_logits():
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.5  # ~60 % accurate
    logits *= 4.0  # far too confident
    before = metrics.expected_calibration_error(metrics.softmax(logits), labels)
    t = fit_temperature(logits[:1000], labels[:1000])
    after = metrics.expected_calibration_error(metrics.softmax(logits[1000:], t), labels[1000:])
    assert t > 1.5  # over-confident logits need T > 1
    assert after < before / 3
    assert metrics.nll(logits[1000:], labels[1000:], t) < metrics.nll(logits[1000:], labels[1000:], 1.0)


def test_version_is_complete_and_loads(tiny_model_dir):
    c = Cascade.load(tiny_model_dir)
    assert c.version == "20000101T000000Z"
    assert (tiny_model_dir.parent / "latest").resolve() == tiny_model_dir.resolve()
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"manufacturer.keras", "type_Airbus.keras", "labels.json", "preprocessing.json"}


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no_manifest"])
def test_damaged_version_fails_with_clear_message(tiny_model_dir, tmp_path, damage):
    broken = tmp_path / "v"
    shutil.copytree(tiny_model_dir, broken)
    if damage == "missing":
        (broken / "type_Boeing.keras").unlink()
        match = "missing.*type_Boeing.keras"
    elif damage == "corrupt":
        with open(broken / "manufacturer.keras", "r+b") as f:
            f.seek(100)
            f.write(b"\x00garbage\x00")
        match = "corrupt.*manufacturer.keras"
    else:
        (broken / "manifest.json").unlink()
        match = "not a complete model version"
    with pytest.raises(mio.ModelLoadError, match=match):
        Cascade.load(broken)


def test_preprocessing_reference_checksum_is_stable():
    spec = pp.PreprocessingSpec(96, 96)
    assert pp.reference_checksum(spec) == pp.reference_checksum(pp.PreprocessingSpec(96, 96))
    assert pp.reference_checksum(spec) != pp.reference_checksum(pp.PreprocessingSpec(96, 96, resize="nearest"))


def test_augmentation_layers_change_images_but_not_shapes(smoke_photos):
    import tensorflow as tf

    from model.training.augment import augmentation, jpeg_recompress

    spec = pp.PreprocessingSpec(64, 64)
    x = np.stack([pp.to_uint8(p, spec) for p in smoke_photos[:4]])
    j = jpeg_recompress(tf.constant(x), min_quality=10, max_quality=20).numpy()
    assert j.shape == x.shape and j.dtype == np.uint8
    assert np.abs(j.astype(int) - x.astype(int)).mean() > 1.0  # quality 10-20 visibly changes pixels
    aug = augmentation(extra=True, grayscale=True, seed=0)
    xs = pp.scale(x, spec)
    out = np.asarray(aug(xs, training=True))
    assert out.shape == xs.shape and not np.allclose(out, xs)
    assert np.allclose(np.asarray(aug(xs, training=False)), xs)  # inference: identity
