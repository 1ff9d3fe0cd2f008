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
