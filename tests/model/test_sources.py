"""Leave-one-source-out helpers (model.training.sources) and stage-1 weights no source can predict
(model.training.weighting.source_manufacturer_weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.training.sources import markdown_table, origin_of
from model.training.weighting import source_manufacturer_weights


def test_fgvc_derived_folders_are_one_origin():
    assert origin_of("tritinvo18-fgvc-subset20") == origin_of("arkhesiae-alys2-fgvc") == "fgvc"
    assert origin_of("fgvc-other-aircraft") == origin_of("fgvc-aircraft-2013b") == "fgvc"
    assert origin_of("davidnh8-airplane-pictures") == "davidnh8"
    assert origin_of("burakkurt07-civil-military") == "burakkurt07"


def test_each_manufacturer_weighs_the_same_inside_a_mixed_source_and_a_one_maker_source_is_capped():
    m = ["Airbus"] * 10 + ["Boeing"] * 30 + ["Boeing"] * 50 + ["Airbus"] + ["Airbus"] * 20
    src = ["mix"] * 40 + ["one"] * 51 + ["render"] * 20
    dom = ["photo"] * 91 + ["render"] * 20
    w = np.ones(len(m))
    out = source_manufacturer_weights(w, m, src, dom, balance=True, one_manufacturer_factor=0.0)
    a = np.asarray(m)
    mix, one, render = np.asarray(src) == "mix", np.asarray(src) == "one", np.asarray(src) == "render"
    assert out[mix & (a == "Airbus")].sum() == pytest.approx(out[mix & (a == "Boeing")].sum())
    assert out[one].sum() == 0.0  # teaches stage 2 only
    assert out.mean() == pytest.approx(1.0)
    assert np.allclose(out[render], out[render][0])
    half = source_manufacturer_weights(w, m, src, dom, balance=False, one_manufacturer_factor=0.5)
    assert half[one][0] / half[render][0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        source_manufacturer_weights(w, m, src, dom, one_manufacturer_factor=2.0)


def test_markdown_table_has_a_row_per_run_and_the_mean():
    fold = {"manufacturer_balanced": 0.7, "family": 0.5, "type_top1": None}
    table = markdown_table({"runs": [{"label": "a", "folds": {"fgvc": fold, "davidnh8": fold},
                                      "mean": {"manufacturer_balanced": 0.7, "family": 0.5, "type_top1": None}}]})
    lines = table.strip().splitlines()
    assert len(lines) == 7 and "davidnh8" in lines[0] and "fgvc" in lines[0]
    assert lines[2].startswith("| a | 0.700 / 0.500 / –") and "**0.700**" in lines[2]
    # the confidence table: runs without those figures show dashes
    assert "sure accuracy / sure share / AURC" in lines[4] and lines[6].startswith("| a | – / – / –")


def test_the_confidence_figures_of_a_fold_and_their_mean_in_the_table():
    from model.training.sources import MEAN_KEYS, _figures

    metrics = {"n": 40, "recall": {"Airbus": 0.9, "Boeing": 0.7}, "family_accuracy": 0.5, "type_top1": 0.3,
               "ece": 0.12, "manufacturer_selective": {"aurc": 0.05, "accuracy_at_80": 0.93, "sure_coverage": 0.6,
                                                       "sure_accuracy": 0.96}}
    fold = _figures(metrics, {"Airbus": 20, "Boeing": 20})
    assert fold["manufacturer_balanced"] == pytest.approx(0.8)
    assert {k: fold[k] for k in ("aurc", "accuracy_at_80", "sure_coverage", "sure_accuracy", "ece")} == \
        {"aurc": 0.05, "accuracy_at_80": 0.93, "sure_coverage": 0.6, "sure_accuracy": 0.96, "ece": 0.12}
    assert set(MEAN_KEYS) <= set(fold)
    table = markdown_table({"runs": [{"label": "b", "folds": {"fgvc": fold}, "mean": {k: fold[k] for k in MEAN_KEYS}}]})
    assert "| b | 0.960 / 0.600 / 0.050 | **0.960** | 0.600 | 0.050 | 0.930 | 0.120 |" in table


def test_the_model_card_carries_the_leave_one_source_out_table_when_there_is_one(tmp_path):
    from model.training.card import loso_section
    from model.training.config import TrainConfig

    cfg = TrainConfig(reports_dir=str(tmp_path))
    assert "make eval-sources" in loso_section(cfg) and "|" not in loso_section(cfg)
    fold = {"manufacturer_balanced": 0.61, "family": 0.4, "type_top1": 0.2}
    (tmp_path / "sources.md").write_text(markdown_table({"runs": [{"label": "views", "folds": {"fgvc": fold},
                                                                   "mean": fold}]}))
    section = loso_section(cfg)
    assert "| views | 0.610 / 0.400 / 0.200 | **0.610** |" in section


def test_threshold_chosen_on_held_out_origins(tmp_path):
    """The lever needs no retraining: a threshold chosen on the other origins' answers, applied to
    the held-out one; the chosen threshold is the lowest whose sure answers meet the target on
    every other origin."""
    import pandas as pd

    from model.training import levers

    rows = []
    for origin, wrong_conf in (("a", 0.7), ("b", 0.8), ("c", 0.9)):
        for i in range(20):  # 18 right answers at 0.99, 2 wrong ones at the origin's confidence
            right = i < 18
            conf = 0.99 if right else wrong_conf
            rows.append({"origin": origin, "manufacturer": "Airbus", "answer_manufacturer": "Airbus" if right else "Boeing",
                         "p_Airbus": conf if right else 1 - conf, "p_Boeing": 1 - conf if right else conf,
                         "unsure": "False"})
    (tmp_path / "sources_predictions").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "sources_predictions" / "x.csv", index=False)
    df = levers._frame(tmp_path / "sources_predictions" / "x.csv")
    # every origin right 18/20 = 0.9 when all are sure; above 0.9 every wrong answer is unsure
    assert levers.choose_threshold(df, 0.95) == pytest.approx(0.91)
    assert levers.choose_threshold(df[df.origin != "c"], 0.95) == pytest.approx(0.81)
    assert levers.main(["--label", "x", "--reports-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "levers.json").read_text())["origins"]
    # held out c: the threshold from a and b (0.81) lets c's wrong answers at 0.9 through
    assert report["c"]["threshold"] == pytest.approx(0.81) and report["c"]["sure_accuracy"] == 0.9
    assert report["a"]["sure_accuracy"] == 1.0 and report["a"]["sure_share"] == 0.9
    assert report["a"]["served_sure_share"] == 1.0 and report["a"]["airbus_boeing_to_other"] == 0.0
    assert "| mean |" in (tmp_path / "levers.md").read_text()
    assert levers.main(["--label", "missing", "--reports-dir", str(tmp_path)]) == 2


def test_rules_of_several_signals_chosen_on_held_out_origins(tmp_path):
    """The second lever: threshold, novelty (k-NN distance against the fold's validation
    percentile) and views, chosen on the other origins; a signal that flags exactly the wrong
    answers is chosen, and each origin's figures come from a rule it took no part in choosing."""
    import pandas as pd

    from model.training import levers

    rows = []
    for origin in ("a", "b", "c"):
        for i in range(20):  # 16 right, 4 wrong, all at 0.99: no threshold separates them
            right = i < 16
            novel = not right if origin != "c" else i >= 18  # c: only 2 of its 4 wrong answers look unusual
            rows.append({"origin": origin, "manufacturer": "Airbus", "answer_manufacturer": "Airbus" if right else "Boeing",
                         "p_Airbus": 0.99 if right else 0.01, "p_Boeing": 0.01 if right else 0.99, "unsure": "False",
                         "knn_10": 1.2 if novel else 0.5, "val_q95_knn_10": 0.9,
                         "pf_Airbus": 0.99 if right else 0.01, "pf_Boeing": 0.01 if right else 0.99,
                         "pz_Airbus": 0.99 if right else 0.01, "pz_Boeing": 0.01 if right else 0.99})
    (tmp_path / "sources_predictions").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "sources_predictions" / "x.csv", index=False)
    df = levers._frame(tmp_path / "sources_predictions" / "x.csv")
    t = levers.choose_threshold(df, 0.95)  # the wrong answers are as confident as the right ones:
    assert levers._sure(df, t)[0] == 0.0  # only a threshold above every answer "meets" the target
    rule = levers.choose_rule(df[df.origin != "c"], 0.95)
    assert rule == {"threshold": 0.5, "novelty": (10, 95), "views": "none"}  # views never disagree here
    out = levers.held_out_rules(df, 0.95)
    # a's rule comes from b and c, where c's unflagged wrong answers leave only "nothing is sure"
    assert out["a"]["sure_share"] == 0.0 and out["a"]["sure_accuracy"] is None
    assert out["c"]["sure_share"] == 0.9 and out["c"]["sure_accuracy"] == pytest.approx(16 / 18, abs=1e-4)
    assert out["all"]["rule"]["threshold"] > 0.99  # over all three: only a rule that keeps nothing
    fixed = levers.fixed_rules(df)
    assert fixed["a"]["threshold only"] == {"sure_share": 1.0, "sure_accuracy": 0.8}
    assert fixed["a"]["+ novelty k=10 q=95"] == {"sure_share": 0.8, "sure_accuracy": 1.0}
    assert fixed["a"]["balanced_image"] == 0.8  # Airbus recall alone: no Boeing photo
    temps = levers.held_out_temperature(df)
    assert set(temps) == {"a", "b", "c"} and all(t["ece_after"] < t["ece_before"] for t in temps.values())
    assert levers.main(["--label", "x", "--reports-dir", str(tmp_path)]) == 0
    text = (tmp_path / "levers.md").read_text()
    assert "k-NN(10) < validation q95" in text and "Temperature fitted on the other origins" in text
