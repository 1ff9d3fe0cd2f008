"""The selective-prediction figures (model.metrics): risk-coverage, AURC, accuracy at a coverage,
and the share/accuracy of sure answers, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import accuracy_at_coverage, aurc, risk_coverage, selective_figures


def test_risk_coverage_keeps_the_most_confident_first():
    conf = np.array([0.6, 0.9, 0.7, 0.8])
    ok = np.array([True, True, False, True])
    cov, risk = risk_coverage(conf, ok)
    # order 0.9 (ok), 0.8 (ok), 0.7 (wrong), 0.6 (ok)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx([0.0, 0.0, 1 / 3, 0.25])
    assert aurc(conf, ok) == pytest.approx((0 + 0 + 1 / 3 + 0.25) / 4)


def test_a_perfect_ranking_has_a_smaller_aurc_than_a_reversed_one():
    ok = np.array([True] * 8 + [False] * 2)
    good = np.linspace(1.0, 0.1, 10)  # the wrong ones are the least confident
    assert aurc(good, ok) < aurc(good[::-1], ok)
    assert accuracy_at_coverage(good, ok, 0.8) == 1.0
    assert accuracy_at_coverage(good[::-1], ok, 0.8) == pytest.approx(6 / 8)


def test_selective_figures_of_sure_answers():
    conf = np.array([0.95, 0.9, 0.55, 0.5])
    ok = np.array([True, False, True, False])
    f = selective_figures(conf, ok, conf >= 0.6)
    assert f["sure_coverage"] == 0.5 and f["sure_accuracy"] == 0.5
    assert f["accuracy_at_80"] == pytest.approx(2 / 4)  # ceil(0.8 * 4) = 4 answers
    none_sure = selective_figures(conf, ok, np.zeros(4, bool))
    assert none_sure["sure_coverage"] == 0.0 and none_sure["sure_accuracy"] is None
    assert selective_figures([], [], []) == {"aurc": None, "accuracy_at_80": None, "sure_coverage": None,
                                             "sure_accuracy": None}
