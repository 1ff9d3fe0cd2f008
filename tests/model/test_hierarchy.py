"""Manufacturer → family → ICAO type: stage-2 leaves, partial labels, training weights, and
answers at the level the model knows (model.training.prepare, model.training.joint, model.training.weighting, model.cascade)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model import preprocessing as pp
from model.cascade import Cascade, leaf_families


class _Const:
    """A stand-in model returning fixed probabilities (answer logic only)."""

    def __init__(self, row):
        self.row = np.asarray([row], np.float32)

    def predict_on_batch(self, x):
        return np.repeat(self.row, len(x), 0)


LABELS = {"manufacturer": ["Airbus", "Boeing"],
          "types": {"Airbus": ["A320", "A388"], "Boeing": ["B772", "B77W", "B787 family"]},
          "families": {"Airbus": {"A320": "A320", "A388": "A380"},
                       "Boeing": {"B772": "B777", "B77W": "B777", "B787 family": "B787"}}}


def _answer(p_m, p_boeing, type_threshold=0.5, labels=LABELS):
    stage2 = {"Airbus": _Const([0.5, 0.5]), "Boeing": _Const(p_boeing)}
    c = Cascade(_Const(p_m), stage2, labels, pp.PreprocessingSpec(8, 8), "v", 0.6, type_threshold=type_threshold)
    return c.predict(np.zeros((1, 8, 8, 3), np.float32), top_k=3)[0]


def test_a_confident_trained_type_is_named():
    res = _answer([0.1, 0.9], [0.1, 0.8, 0.1])
    assert res["type"]["label"] == "B77W" and res["type"]["probability"] == pytest.approx(0.8)
    assert res["family"] == {"label": "B777", "probability": pytest.approx(0.9),
                             "joint_probability": pytest.approx(0.9 * 0.9)}
    assert res["answer"] == {"level": "type", "label": "B77W", "text": "Boeing B77W"}
    assert res["branches"][0]["joint_probability"] == pytest.approx(0.9 * 0.8)


def test_an_unsure_type_stops_at_its_family():
    # neither 777 is likely enough alone, but the family is: "B777 family"
    res = _answer([0.1, 0.9], [0.35, 0.4, 0.25])
    assert res["type"] == {"label": None, "probability": None, "joint_probability": None}
    assert res["family"]["label"] == "B777" and res["family"]["probability"] == pytest.approx(0.75)
    assert res["answer"] == {"level": "family", "label": "B777 family", "text": "Boeing B777 family"}
    assert res["branches"][0]["joint_probability"] == pytest.approx(0.9 * 0.75)
    # the ranking still lists the candidates, a family leaf without a type
    assert [(t["family"], t["type"]) for t in res["top_k"]] == [("B777", "B77W"), ("B777", "B772"), ("B787", None)]


def test_a_family_leaf_is_never_named_as_a_type():
    res = _answer([0.1, 0.9], [0.05, 0.05, 0.9])
    assert res["type"]["label"] is None
    assert res["answer"] == {"level": "family", "label": "B787 family", "text": "Boeing B787 family"}


def test_type_threshold_is_configurable():
    assert _answer([0.1, 0.9], [0.35, 0.4, 0.25], type_threshold=0.4)["answer"]["level"] == "type"
    assert _answer([0.1, 0.9], [0.1, 0.8, 0.1], type_threshold=0.9)["answer"]["level"] == "family"


def test_a_manufacturer_without_stage_2_answers_at_manufacturer_level():
    labels = {"manufacturer": ["Airbus", "Boeing", "Other"], "types": LABELS["types"], "families": LABELS["families"]}
    res = _answer([0.05, 0.05, 0.9], [1, 0, 0], labels=labels)
    assert res["answer"] == {"level": "manufacturer", "label": "Other",
                             "text": "another manufacturer (not Airbus or Boeing)"}
    assert res["family"]["label"] is None and res["type"]["label"] is None
    assert res["family"]["label"] is None and res["type"]["label"] is None


def test_versions_from_before_families_get_them_from_the_designator_table():
    old = {"manufacturer": ["Airbus", "Boeing"], "types": {"Boeing": ["B738", "B744", "B777 family"]}}
    assert leaf_families(old, "Boeing") == ["B737", "B747", "B777"]


def test_stage2_leaves_and_partial_label_targets():
    from model.training.prepare import leaf_targets, stage2_leaves

    rows = ([("Boeing", "B738", "B737")] * 10 + [("Boeing", "B739", "B737")] * 3 + [("Boeing", "", "B737")] * 4
            + [("Boeing", "", "B787")] * 9 + [("Boeing", "B744", "B747")] * 8 + [("Airbus", "A388", "A380")] * 8
            + [("Airbus", "", "")] * 2 + [("Other", "E190", "")] * 5)
    df = pd.DataFrame(rows, columns=["manufacturer", "icao_type", "family"])
    types, families = stage2_leaves(df, ["Airbus", "Boeing", "Other"], min_images=8)
    # B739 is too rare to be a class; B787 has no type at all: a whole-family leaf; Airbus has one leaf only
    assert types == {"Boeing": ["B738", "B744", "B787 family"]}
    assert families == {"Boeing": {"B738": "B737", "B744": "B747", "B787 family": "B787"}}
    mask, labelled, columns = leaf_targets(df, types, families)
    assert columns == {"Boeing": [0, 1, 2]}
    assert mask[0].tolist() == [1, 0, 0]                                # a typed row: one leaf
    assert mask[10].tolist() == mask[13].tolist() == [1, 0, 0]           # B739 / 737 with no type: the 737 leaves
    assert mask[17].tolist() == [0, 0, 1]                                # family-only B787
    assert not labelled[-1] and not labelled[34] and mask[-1].tolist() == [1, 1, 1]  # Other, Airbus: no target


def test_partial_label_loss_is_cross_entropy_of_the_allowed_set():
    from model.training.joint import partial_label_loss

    z = np.log(np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], np.float32))
    mask = np.array([[0, 1, 0], [1, 1, 0]], np.float32)
    loss = np.asarray(partial_label_loss(mask, z))
    np.testing.assert_allclose(loss, [-np.log(0.3), -np.log(0.8)], rtol=1e-5)


def test_balanced_weights_equalise_manufacturers_families_and_domains():
    from model.training.weighting import balanced_weights

    m = ["Boeing"] * 90 + ["Boeing"] * 10 + ["Airbus"] * 5 + ["Airbus"] * 15
    f = ["B737"] * 90 + ["B777"] * 10 + ["A320"] * 5 + ["A320"] * 15
    d = ["photo"] * 100 + ["photo"] * 5 + ["render"] * 15
    w = balanced_weights(m, f, d, photo_share=0.6)
    w = np.asarray(w)
    assert w.mean() == pytest.approx(1.0)
    assert w[:100].sum() == pytest.approx(w[100:].sum())          # manufacturers equal
    assert w[:90].sum() == pytest.approx(w[90:100].sum())          # families equal
    assert w[100:105].sum() == pytest.approx(1.5 * w[105:].sum())  # photos 0.6 : renders 0.4
    by_count = np.asarray(balanced_weights(m, f, d, family_power=0.0))
    assert by_count[:90].sum() == pytest.approx(9 * by_count[90:100].sum())
    with pytest.raises(ValueError):
        balanced_weights(m, f, d, photo_share=1.5)
    # one big collection does not outweigh a small one when sources are balanced
    src = ["big"] * 80 + ["small"] * 20 + ["web"] * 5 + ["render"] * 15
    even = np.asarray(balanced_weights(m, f, d, source=src, source_power=1.0))
    assert even[:80].sum() == pytest.approx(even[80:90].sum())  # B737: big vs small collection, equal
    assert even[:100].sum() == pytest.approx(even[100:].sum())  # manufacturers still equal


def test_photo_views_are_deterministic_and_differ_from_the_plain_resize(tmp_path):
    from PIL import Image

    from model.training import augment

    rng = np.random.default_rng(0)
    path = tmp_path / "p.jpg"
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(path)
    spec = pp.PreprocessingSpec(32, 32)
    args = ([str(path)], ["abc"], ["0 0 90 50"], spec, 2)
    a = augment.make_views(*args, seed=0, cache_dir=None, workers=1)
    b = augment.make_views(*args, seed=0, cache_dir=tmp_path, workers=1)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(next(tmp_path.glob("views-*.npy"))), a)   # cached
    assert not np.array_equal(a[0], a[1])                                            # two different views
    assert not np.array_equal(a[0], pp.to_uint8(str(path), spec, "0 0 90 50"))
    assert not np.array_equal(a, augment.make_views(*args, seed=1, cache_dir=None, workers=1))


def test_threshold_variables_empty_means_default_and_bad_values_are_named(monkeypatch):
    from model.cascade import env_probability

    monkeypatch.setenv("PLANESPOTTER_AIRCRAFT_THRESHOLD", "")
    assert env_probability("PLANESPOTTER_AIRCRAFT_THRESHOLD", 0.04) == 0.04
    monkeypatch.setenv("PLANESPOTTER_AIRCRAFT_THRESHOLD", " 0.2 ")
    assert env_probability("PLANESPOTTER_AIRCRAFT_THRESHOLD", 0.04) == 0.2
    for bad in ("abc", "1.5", "-0.1"):
        monkeypatch.setenv("PLANESPOTTER_AIRCRAFT_THRESHOLD", bad)
        with pytest.raises(ValueError, match="PLANESPOTTER_AIRCRAFT_THRESHOLD"):
            env_probability("PLANESPOTTER_AIRCRAFT_THRESHOLD", 0.04)
