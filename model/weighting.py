"""Class weights for imbalanced training sets (used by :mod:`model.train` and :mod:`model.features`)."""

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
                     family_power: float = 1.0) -> np.ndarray:
    """Per-row training weights that keep small groups from being drowned: every manufacturer gets
    the same total weight; within a manufacturer each family gets a share proportional to
    ``n_family ** (1 - family_power)`` (``family_power`` 1: equal shares, 0: shares by count); within
    a family, photos get ``photo_share`` of its weight and renders the rest when both are present
    (all of it when only one domain is). Rows share their cell's weight equally.

    Why: the real photos are 417 Airbus against 4,244 Boeing, and 2,303 of the Boeings are 737s;
    unweighted, "Boeing" would be learnt as "737 or 747" and "Airbus" as "A318 or A380"
    (measured: leave-one-source-out recall of Airbus 0.16-0.29 without this weighting).

    Args:
        manufacturer, family, domain: sequences of str, one per row (``family`` may be ``""``:
            its own cell; ``domain`` ``"photo"`` or ``"render"``).
        photo_share: in [0, 1].
        family_power: in [0, 1].
    Returns:
        float64 ``(n,)``, mean 1 (so the loss keeps its scale).
    Raises:
        ValueError: a share or power outside [0, 1], or sequences of different lengths.
    """
    if not 0 <= photo_share <= 1 or not 0 <= family_power <= 1:
        raise ValueError(f"photo_share and family_power must lie in [0, 1], got {photo_share}, {family_power}")
    m, f, d = (np.asarray(v, dtype=object) for v in (manufacturer, family, domain))
    if not len(m) == len(f) == len(d):
        raise ValueError("manufacturer, family and domain must have the same length")
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
                w[cell] = share * part / cell.sum()
    return w * len(w) / w.sum() if w.sum() > 0 else w
