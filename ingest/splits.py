"""Airframe groups and the stratified group split of imported photos.

Rule (the brief of the importers): rows that show the same airframe (same ``registration``) or
the same photo (same ``sha256``, or pHash Hamming distance ≤ ``max_distance``) form one group —
the transitive closure of those relations — and a group never spans two splits. Groups are then
dealt to train/validation/test per stratum (manufacturer × family) so each stratum gets its
fractions, and a stratum with at least three groups gets at least one group in every split.
The near-duplicate pairs and the closure into groups are :mod:`dataset.duplicates`'
(:func:`~dataset.duplicates.near_duplicate_pairs`, :func:`~dataset.duplicates.union_groups`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from dataset.schema import SPLITS

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def same_value_edges(values: Sequence[str]) -> list[tuple[int, int]]:
    """Edges joining rows with the same non-empty value (each row to the first with it)."""
    first: dict[str, int] = {}
    edges = []
    for k, v in enumerate(values):
        if not v:
            continue
        if v in first:
            edges.append((first[v], k))
        else:
            first[v] = k
    return edges


def check_fractions(fractions: Sequence[float]) -> np.ndarray:
    """``fractions`` (train, validation, test) as a float64 array; ValueError unless they are three
    non-negative numbers summing to 1 with train > 0."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0) or f[0] <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train > 0) summing to 1, "
                         f"got {list(fractions)}")
    return f


def assign_group_splits(groups: Sequence[int], strata: Sequence[str], preset: Sequence[str],
                        keys: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                        seed: int = 0) -> list[str]:
    """Assign every row a split so that no group spans two splits (unless ``preset`` says so).

    Args:
        groups: group id of each row (:func:`dataset.duplicates.union_groups`).
        strata: stratum of each row (e.g. ``"Airbus/A220"``); a group belongs to the stratum most
            of its rows have (ties: the alphabetically first).
        preset: a split already given to the row (``train``/``validation``/``test``) or ``""``.
            Given splits are kept; the other rows of a group take its most common given split
            (ties: train, validation, test order).
        keys: a stable key per row (``image_path``): groups are ordered by their smallest key
            before shuffling, so the result does not depend on the input row order.
        fractions: target shares of train, validation, test (rows, not groups).
        seed: shuffles groups of equal size (``numpy.random.default_rng``); same inputs and
            seed → same splits.
    Returns:
        The split of each row.
    Raises:
        ValueError: bad ``fractions`` or sequences of different lengths.

    Within a stratum the free groups are shuffled, then dealt largest first, each to the split
    whose row count is furthest below its target (``fraction × stratum rows``; ties go to the
    earlier split). A stratum with at least three groups first gives its smallest free group to
    each split (of non-zero fraction) that would otherwise be empty, test first, then validation.
    """
    f = check_fractions(fractions)
    n = len(groups)
    if not (len(strata) == len(preset) == len(keys) == n):
        raise ValueError("groups, strata, preset and keys must have the same length")
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = list(preset)
    g_stratum, g_preset = {}, {}
    for g, rows in members.items():
        c = Counter(strata[i] for i in rows)
        top = max(c.values())
        g_stratum[g] = min(s for s, k in c.items() if k == top)
        given = Counter(preset[i] for i in rows if preset[i])
        if given:
            top = max(given.values())
            g_preset[g] = next(s for s in SPLITS if given.get(s) == top)
            for i in rows:
                out[i] = out[i] or g_preset[g]
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for g in members:
        by_stratum[g_stratum[g]].append(g)
    rng = np.random.default_rng(seed)
    for stratum in sorted(by_stratum):
        gs = sorted(by_stratum[stratum], key=lambda g: min(keys[i] for i in members[g]))
        size = {g: len(members[g]) for g in gs}
        count = np.zeros(3)
        for g in gs:
            if g in g_preset:
                count[SPLITS.index(g_preset[g])] += size[g]
        free = [g for g in gs if g not in g_preset]
        order = [free[k] for k in rng.permutation(len(free))]
        order.sort(key=lambda g: -size[g])  # stable: equal sizes keep the shuffled order
        target = f * sum(size.values())
        choice: dict[int, int] = {}
        if len(gs) >= 3:
            for s in (2, 1):
                if count[s] == 0 and f[s] > 0 and len(order) > (1 if count[0] == 0 else 0):
                    g = order.pop()
                    choice[g] = s
                    count[s] += size[g]
        for g in order:
            s = int(np.argmax(target - count))
            choice[g] = s
            count[s] += size[g]
        for g, s in choice.items():
            for i in members[g]:
                out[i] = SPLITS[s]
    return out


def leaking_groups(groups: Sequence[int], splits: Sequence[str]) -> list[int]:
    """Group ids whose rows sit in more than one split (``""`` counts as no split)."""
    seen: dict[int, set[str]] = defaultdict(set)
    for g, s in zip(groups, splits):
        if s:
            seen[g].add(s)
    return sorted(g for g, s in seen.items() if len(s) > 1)
