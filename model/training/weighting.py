"""Class weights for imbalanced training sets (used by :mod:`model.training.fit`, :mod:`model.training.prepare` and :mod:`model.training.features`)."""

from __future__ import annotations

import numpy as np


def class_weights(y: np.ndarray, n: int) -> dict[int, float]:
    """Balanced class weights, ``total / (n * count_c)`` per class (scikit-learn's "balanced").

    Args:
        y: integer class labels in ``[0, n)``, shape ``(m,)``.
        n: number of classes.

    Returns:
        ``{class index: weight}`` for all ``n`` classes; a class absent from ``y`` gets 0.0.
        With balanced labels every weight is 1.0.

    Raises:
        ValueError: a label is negative or ``>= n`` (``np.bincount``'s error for negatives).
    """
    y = np.asarray(y)
    if y.size and int(y.max()) >= n:
        raise ValueError(f"label {int(y.max())} out of range for {n} classes")
    counts = np.bincount(y, minlength=n).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n * np.maximum(counts, 1)), 0.0)
    return {i: float(w[i]) for i in range(n)}


def balanced_weights(manufacturer, family, domain, photo_share: float = 0.5,
                     family_power: float = 1.0, source=None, source_power: float = 0.0) -> np.ndarray:
    """Per-row training weights that keep small groups from being drowned: every manufacturer gets
    the same total weight; within a manufacturer each family gets a share proportional to
    ``n_family ** (1 - family_power)`` (``family_power`` 1: equal shares, 0: shares by count); within
    a family, photos get ``photo_share`` of its weight and renders the rest when both are present
    (all of it when only one domain is); within that, with ``source`` given, each source gets a
    share proportional to ``n_source ** (1 - source_power)``. Rows share their cell's weight
    equally.

    Why: the real photos are 417 Airbus against 4,244 Boeing, and 2,303 of the Boeings are 737s;
    unweighted, "Boeing" would be learnt as "737 or 747" and "Airbus" as "A318 or A380"
    (measured: leave-one-source-out recall of Airbus 0.16-0.29 without this weighting).

    Args:
        manufacturer, family, domain: sequences of str, one per row (``family`` may be ``""``:
            its own cell; ``domain`` ``"photo"`` or ``"render"``).
        photo_share: in [0, 1].
        family_power: in [0, 1].
        source: sequence of str per row (e.g. the photo collection), or ``None``; source_power in
            [0, 1]: 1 gives every source of a cell the same weight, so that one large collection
            (2,687 Boeing photos from one web site, 4 Airbus) does not teach its photographic style
            as a sign of the manufacturer.
    Returns:
        float64 ``(n,)``, mean 1 (so the loss keeps its scale).
    Raises:
        ValueError: a share or power outside [0, 1], or sequences of different lengths.
    """
    if not all(0 <= v <= 1 for v in (photo_share, family_power, source_power)):
        raise ValueError(f"photo_share, family_power and source_power must lie in [0, 1], got "
                         f"{photo_share}, {family_power}, {source_power}")
    m, f, d = (np.asarray(v, dtype=object) for v in (manufacturer, family, domain))
    src = np.asarray(source, dtype=object) if source is not None else np.full(len(m), "", dtype=object)
    if not len(m) == len(f) == len(d) == len(src):
        raise ValueError("manufacturer, family, domain and source must have the same length")
    w = np.zeros(len(m))
    for man in np.unique(m):
        in_m = m == man
        fams, counts = np.unique(f[in_m], return_counts=True)
        shares = counts.astype(np.float64) ** (1.0 - family_power)
        shares /= shares.sum()
        for fam, share in zip(fams, shares):
            in_f = in_m & (f == fam)
            doms = set(d[in_f])
            for dom in doms:
                cell = in_f & (d == dom)
                part = 1.0 if len(doms) == 1 else (photo_share if dom == "photo" else 1.0 - photo_share)
                sources, n_src = np.unique(src[cell], return_counts=True)
                src_shares = n_src.astype(np.float64) ** (1.0 - source_power)
                src_shares /= src_shares.sum()
                for name, s_share, n in zip(sources, src_shares, n_src):
                    w[cell & (src == name)] = share * part * s_share / n
    return w * len(w) / w.sum() if w.sum() > 0 else w


def source_manufacturer_weights(w, manufacturer, source, domain, balance: bool = True,
                                one_manufacturer_factor: float = 1.0, minority_share: float = 0.05) -> np.ndarray:
    """Stage-1 weights that no photo source can predict: within each photo source that holds
    several manufacturers (each at least ``minority_share`` of its rows), every manufacturer gets
    the same share of the source's total weight (``balance``); a photo source where one
    manufacturer holds more than ``1 - minority_share`` of the rows (davidnh8: 3,730 Boeing,
    4 Airbus) has its weight multiplied by ``one_manufacturer_factor`` (0: it teaches stage 2
    only). Renders are left as they are. The result is rescaled to the mean of ``w``.

    Why: when a source's style goes with one manufacturer, "looks like this source" is learnt as
    "this manufacturer"; held-out-source accuracy is what suffers (README, leave-one-source-out).

    Args:
        w: float ``(n,)`` weights (e.g. :func:`balanced_weights`); manufacturer, source, domain:
            sequences of str ``(n,)``; one_manufacturer_factor in [0, 1].
    Returns:
        float64 ``(n,)``.
    Raises:
        ValueError: lengths differ, or the factor lies outside [0, 1].
    """
    w = np.asarray(w, np.float64).copy()
    m, src, d = (np.asarray(v, dtype=object) for v in (manufacturer, source, domain))
    if not len(w) == len(m) == len(src) == len(d):
        raise ValueError("w, manufacturer, source and domain must have the same length")
    if not 0 <= one_manufacturer_factor <= 1:
        raise ValueError(f"one_manufacturer_factor must lie in [0, 1], got {one_manufacturer_factor}")
    mean = w.mean() if len(w) else 0.0
    for name in np.unique(src[d == "photo"]):
        rows = (src == name) & (d == "photo")
        makers, counts = np.unique(m[rows], return_counts=True)
        shares = counts / counts.sum()
        major = shares.max()
        if major > 1 - minority_share:
            w[rows] *= one_manufacturer_factor
        elif balance:
            total = w[rows].sum()
            kept = makers[shares >= minority_share]
            for mk in makers:
                cell = rows & (m == mk)
                cw = w[cell].sum()
                if cw > 0:
                    w[cell] *= (total / len(kept) / cw) if mk in kept else 1.0
    return w * mean / w.mean() if w.sum() > 0 else w
