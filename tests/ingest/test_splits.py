"""Airframe edges and the stratified group split (ingest.splits)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from ingest import splits as sp


def test_same_value_edges_join_each_row_to_the_first():
    assert sp.same_value_edges(["a", "", "b", "a", "", "a"]) == [(0, 3), (0, 5)]


def _fake(n_groups_by_stratum, seed=0, sizes=None):
    """rows of several strata; group k of a stratum has sizes[k % len] rows."""
    sizes = sizes or [1, 2, 1, 3, 1]
    groups, strata, keys = [], [], []
    gid = 0
    for stratum, n in n_groups_by_stratum.items():
        for k in range(n):
            for r in range(sizes[k % len(sizes)]):
                groups.append(gid)
                strata.append(stratum)
                keys.append(f"{stratum}/{k:04d}/{r}")
            gid += 1
    return groups, strata, keys


def test_group_split_respects_groups_fractions_and_small_strata():
    groups, strata, keys = _fake({"Boeing/B737": 400, "Airbus/A220": 3, "Airbus/A300": 2, "Airbus/A380": 12})
    out = sp.assign_group_splits(groups, strata, [""] * len(groups), keys, seed=3)
    assert set(out) == {"train", "validation", "test"}
    assert sp.leaking_groups(groups, out) == []
    per = defaultdict(Counter)
    for s, split in zip(strata, out):
        per[s][split] += 1
    big = per["Boeing/B737"]
    n = sum(big.values())
    assert abs(big["train"] / n - 0.7) < 0.02 and abs(big["test"] / n - 0.15) < 0.02
    for s in ("Airbus/A220", "Airbus/A380"):  # >= 3 groups: every split gets some
        assert set(per[s]) == {"train", "validation", "test"}, (s, per[s])
    # 2 groups (sizes 2 and 1): the larger to train, the smaller where the deficit is largest
    assert per["Airbus/A300"] == Counter(train=2, validation=1)


def test_group_split_is_deterministic_seeded_and_order_free():
    groups, strata, keys = _fake({"Boeing/B737": 60, "Airbus/A320": 30})
    a = sp.assign_group_splits(groups, strata, [""] * len(groups), keys, seed=5)
    assert a == sp.assign_group_splits(groups, strata, [""] * len(groups), keys, seed=5)
    assert a != sp.assign_group_splits(groups, strata, [""] * len(groups), keys, seed=6)
    perm = np.random.default_rng(0).permutation(len(groups))
    # same rows in another order (group ids renumbered): same split per row key
    remap = {}
    g2 = [remap.setdefault(groups[i], len(remap)) for i in perm]
    b = sp.assign_group_splits(g2, [strata[i] for i in perm], [""] * len(groups), [keys[i] for i in perm], seed=5)
    assert {keys[i]: s for i, s in zip(perm, b)} == dict(zip(keys, a))


def test_group_split_keeps_given_splits_and_spreads_them_over_the_group():
    groups = [0, 0, 1, 2, 3, 4, 5]
    strata = ["X"] * 7
    preset = ["test", "", "validation", "", "", "", ""]
    out = sp.assign_group_splits(groups, strata, preset, [str(i) for i in range(7)])
    assert out[:3] == ["test", "test", "validation"]
    assert sp.leaking_groups(groups, out) == []
    assert sp.leaking_groups([0, 0, 1], ["train", "test", ""]) == [0]


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        sp.assign_group_splits([0], ["x"], [""], ["k"], fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="fractions"):
        sp.check_fractions((0.0, 0.5, 0.5))
