"""Confidence signals beyond stage 1's probability (model.confidence): the k-NN novelty, the views
that must agree, the unsure reasons, and a version that carries them (bank + rule), with a real,
tiny Keras stage 1 of the exported layout (manufacturer_logits[… logits] → temperature → probabilities)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model import confidence as conf
from model import io as mio
from model import preprocessing as pp
from model.cascade import Cascade
from tinymodels import colour_stage1

SIZE = 20


def test_knn_distance_is_the_kth_neighbour_on_unit_vectors():
    bank = conf.unit(np.array([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]], np.float32))
    d = conf.knn_distance(np.array([[5, 0, 0], [0, 0, 1]], np.float32), bank, (1, 3))
    assert d[0, 0] == pytest.approx(0.0, abs=1e-6)  # its own direction is in the bank, whatever the length
    assert d[0, 1] == pytest.approx(np.sqrt(2), abs=1e-5)  # the third neighbour is orthogonal
    assert d[1, 0] == pytest.approx(np.sqrt(2), abs=1e-5)  # unlike every training photo
    assert conf.knn_distance(np.array([[0, 1, 0]], np.float32), bank, 1).shape == (1,)
    with pytest.raises(ValueError, match="fewer than k=4"):
        conf.knn_distance(np.ones((1, 3)), bank, 4)
    with pytest.raises(ValueError, match="width"):
        conf.knn_distance(np.ones((1, 4)), bank, 1)


def test_zoom_keeps_the_centre():
    x = np.zeros((1, 10, 10, 1), np.float32)
    x[0, 1:9, 1:9] = 1.0  # a frame of zeros one pixel wide
    z = conf.zoom(x)
    assert z.shape == x.shape and z.dtype == np.float32
    assert z.min() == pytest.approx(1.0)  # the crop of the centre 8x8 leaves the frame out


def _stage1():
    return colour_stage1(SIZE)


def _image(rgb, centre=None):
    x = np.zeros((SIZE, SIZE, 3), np.float32) + np.asarray(rgb, np.float32)
    if centre is not None:
        x[3:-3, 3:-3] = centre
    return x


LABELS = {"manufacturer": ["Airbus", "Boeing"], "types": {}}


def _cascade(rule: dict, bank=None) -> Cascade:
    return Cascade(_stage1(), {}, {**LABELS, "confidence": rule}, pp.PreprocessingSpec(SIZE, SIZE), "v", 0.6,
                   bank=bank)


def test_feature_model_gives_stage1s_probabilities_and_its_features():
    stage1 = _stage1()
    x = np.stack([_image([0.9, 0.1, 0.0]), _image([0.2, 0.7, 0.5])])
    p, f = conf.feature_model(stage1).predict_on_batch(x)
    np.testing.assert_allclose(p, stage1.predict_on_batch(x), atol=1e-6)
    np.testing.assert_allclose(f, [[0.9, 0.1, 0.0], [0.2, 0.7, 0.5]], atol=1e-5)
    import keras

    with pytest.raises(ValueError, match="manufacturer_logits"):
        conf.feature_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_unusual_photo_and_disagreeing_views_are_unsure_with_their_reason():
    bank = conf.unit(np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]] * 3, np.float32))  # red and green photos
    c = _cascade({"novelty_threshold": 0.8, "k": 2, "views": True}, bank)
    x = np.stack([_image([0.9, 0.1, 0.0]),  # like the red training photos: sure Airbus
                  _image([0.5, 0.0, 0.9]),  # mostly blue: Airbus at 0.98, but unlike every training photo
                  _image([0.9, 0.0, 0.0], centre=[0.0, 0.6, 0.0]),  # red frame, green centre: the zoom says Boeing
                  _image([0.5, 0.45, 0.0])])  # stage 1 at 0.60: just sure
    sure, novel, views, low = c.predict(x)
    assert sure["unsure"] is False and sure["unsure_reasons"] == []
    assert novel["manufacturer"]["label"] == "Airbus" and novel["manufacturer"]["probability"] > 0.95
    assert novel["unsure"] is True and novel["unsure_reasons"] == ["unusual_photo"]
    assert views["unsure"] is True and "views_disagree" in views["unsure_reasons"]
    assert low["unsure"] is False  # p = sigmoid(0.8) = 0.69 >= 0.6, colours like the bank, views agree
    assert [s for s in ("novelty", "views") if s in __import__("model.pipeline", fromlist=["Pipeline"]).Pipeline(c).stages] \
        == ["novelty", "views"]


def test_low_confidence_or_two_close_types_without_the_other_signals():
    c = _cascade({})  # no novelty, no views: the default rule
    assert not c.novelty and not c.views
    (a, b) = c.predict(np.stack([_image([0.9, 0.1, 0.0]), _image([0.5, 0.49, 0.0])]))
    assert a["unsure_reasons"] == []
    assert b["unsure"] is True and b["unsure_reasons"] == ["types_close"]  # 0.52 vs 0.48: close
    assert c.unsure_reasons(0.55, [(0.55, "Airbus"), (0.2, "Boeing")], None, None) == ["low_confidence"]
    assert c.unsure_reasons(0.55, [(0.55,)], 0.9, True) == ["low_confidence", "views_disagree"]


def test_a_version_keeps_its_bank_and_rule(tmp_path):
    bank = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]] * 3, np.float32)
    labels = {**LABELS, "confidence": {"novelty_threshold": 0.5, "k": 2, "views": False, "types_close": 0.5}}
    path = mio.save_version(tmp_path, _stage1(), {}, labels, pp.PreprocessingSpec(SIZE, SIZE), {}, "card", bank=bank)
    assert conf.BANK_FILE in mio.check_version(path)["files"]
    c = Cascade.load(path)
    assert c.novelty and c.confidence.novelty_threshold == 0.5 and c.bank.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(c.bank, axis=1), 1.0, atol=1e-3)  # stored unit length, float16
    (a,) = c.predict(_image([0.5, 0.0, 0.9])[None])
    assert a["unsure_reasons"] == ["unusual_photo"]
    # a rule that needs a bank the folder lacks does not load
    other = mio.save_version(tmp_path, _stage1(), {}, labels, pp.PreprocessingSpec(SIZE, SIZE), {}, "card",
                             version="nobank", update_latest=False)
    with pytest.raises(mio.ModelLoadError, match="novelty.npz"):
        Cascade.load(other)


def test_the_training_threshold_is_the_validation_photos_percentile():
    from model.training.config import TrainConfig
    from model.training.novelty import fit_confidence

    rng = np.random.default_rng(0)
    reds = [_image([0.8 + 0.2 * rng.random(), 0.2 * rng.random(), 0.1 * rng.random()]) for _ in range(30)]
    pixels = np.round(np.stack(reds) * 255).astype(np.uint8)
    df = pd.DataFrame({"domain": ["photo"] * 30})
    c = Cascade(_stage1(), {}, dict(LABELS), pp.PreprocessingSpec(SIZE, SIZE), "v", 0.6)
    sel = {"train": np.arange(20), "validation": np.arange(20, 30)}
    assert fit_confidence(TrainConfig(), c, df, pixels, sel) is None and c.bank is None
    rule = fit_confidence(TrainConfig(novelty_quantile=90, novelty_k=3, views=True), c, df, pixels, sel)
    assert rule["views"] is True and rule["k"] == 3 and c.bank.shape == (20, 3)
    d_val = conf.knn_distance(conf.feature_model(c.stage1).predict_on_batch(pp.scale(pixels[20:], c.spec))[1],
                              c.bank, 3)
    assert rule["novelty_threshold"] == pytest.approx(float(np.quantile(d_val, 0.9)), abs=1e-4)
    with pytest.raises(ValueError, match="validation image"):
        fit_confidence(TrainConfig(novelty_quantile=90), c, df, pixels, {"train": np.arange(20), "validation": np.arange(0)})
    renders = df.assign(domain="render")  # no photos: every row makes the bank
    assert fit_confidence(TrainConfig(novelty_quantile=90, novelty_k=3), c, renders, pixels, sel)["k"] == 3
    assert c.bank.shape == (20, 3)


def test_a_registration_settles_the_reasons():
    from model.reader import Reading, fuse
    from model.registry import Entry

    c = _cascade({})
    (ans,) = c.predict(_image([0.5, 0.49, 0.0])[None])
    assert ans["unsure_reasons"] == ["types_close"]
    out = fuse(ans, Reading("D-AIGN", "D-AIGN", Entry("D-AIGN", "A343", "AIRBUS A340-300"), [0, 0, 1, 1], 0.9, 0))
    assert out["unsure"] is False and out["unsure_reasons"] == []
