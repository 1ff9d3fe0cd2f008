"""Near-duplicate photos: pHash pairs within a Hamming distance, and groups of rows.

Two photos are near-duplicates when their 64-bit perceptual hashes (:func:`dataset.images.phash`)
differ in at most :data:`MAX_DISTANCE` bits. :func:`near_duplicate_pairs` finds every such pair of
a dataset's rows at once (vectorised, in chunks); :func:`union_groups` closes any relation between
rows (near-duplicates, same airframe, same sha256) transitively into groups, so a split can keep
each group on one side (``ingest.splits``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: pHash Hamming distance at or below which two photos are near-duplicates; the crawler's
#: ``NEAR_DUPLICATE_MAX_DISTANCE`` (scrape/settings.py) is this value.
MAX_DISTANCE = 6

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def near_duplicate_pairs(phashes: Sequence[str], max_distance: int = MAX_DISTANCE,
                         chunk: int = 256) -> np.ndarray:
    """All pairs of rows whose 64-bit pHashes differ in at most ``max_distance`` bits.

    Args:
        phashes: 16-hex-digit hashes (:func:`dataset.images.phash`); ``""`` rows never pair.
        max_distance: Hamming threshold, 0..64 (inclusive).
        chunk: rows compared at once (memory ``8 * chunk * len(phashes)`` bytes).
    Returns:
        int64 array ``(k, 2)`` of row indices ``i < j``, sorted by ``i`` then ``j``.
    """
    idx = np.array([k for k, h in enumerate(phashes) if h], dtype=np.int64)
    if len(idx) < 2:
        return np.zeros((0, 2), np.int64)
    v = np.array([int(phashes[k], 16) for k in idx], dtype=np.uint64)
    out = []
    for start in range(0, len(v), chunk):
        x = v[start:start + chunk, None] ^ v[None, :]
        d = _POPCOUNT[x.view(np.uint8)].reshape(x.shape[0], x.shape[1], 8).sum(-1, dtype=np.int64)
        i, j = np.nonzero(d <= max_distance)
        i = i + start
        keep = j > i
        if keep.any():
            out.append(np.stack([idx[i[keep]], idx[j[keep]]], axis=1))
    if not out:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(out)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def union_groups(n: int, edges) -> list[int]:
    """Connected components of ``n`` nodes under ``edges`` (iterable of ``(i, j)``).

    Returns the component id of each node: the smallest node index in its component.
    """
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]
