"""Near-duplicate pairs (pHash Hamming distance) and their transitive groups (dataset.duplicates)."""

from __future__ import annotations

import numpy as np

from dataset.duplicates import MAX_DISTANCE, near_duplicate_pairs, union_groups
from dataset.images import hamming
from scrape import settings as crawl_settings


def test_near_duplicate_pairs_match_pairwise_hamming():
    rng = np.random.default_rng(1)
    base = [int(x) for x in rng.integers(0, 2**63, 40, dtype=np.int64)]
    # near copies: flip 1..8 bits of some hashes
    hashes = [f"{b:016x}" for b in base]
    for k, flips in enumerate([1, 3, 6, 7, 8]):
        v = base[k]
        for bit in rng.choice(64, flips, replace=False):
            v ^= 1 << int(bit)
        hashes.append(f"{v:016x}")
    hashes.append("")  # a row without a hash never pairs
    got = near_duplicate_pairs(hashes, 6, chunk=7)
    want = [(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
            if hashes[i] and hashes[j] and hamming(hashes[i], hashes[j]) <= 6]
    assert [tuple(p) for p in got.tolist()] == want
    assert {(0, 40), (1, 41), (2, 42)} <= set(want) and (3, 43) not in want  # 7 bits: not a duplicate
    assert near_duplicate_pairs(hashes[:1]).shape == (0, 2)


def test_union_groups_is_transitive():
    g = union_groups(6, [(4, 1), (1, 2), (5, 5)])
    assert g == [0, 1, 1, 3, 1, 5]


def test_the_default_threshold_is_the_crawlers():
    assert MAX_DISTANCE == crawl_settings.NEAR_DUPLICATE_MAX_DISTANCE == 6
    hashes = ["0" * 16, f"{(1 << MAX_DISTANCE) - 1:016x}", f"{(1 << (MAX_DISTANCE + 1)) - 1:016x}"]
    assert [tuple(p) for p in near_duplicate_pairs(hashes).tolist()] == [(0, 1), (1, 2)]
