"""Temperature scaling and expected calibration error.

Source: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017:
a single temperature ``T > 0`` divides the logits, fitted by minimising the negative
log-likelihood on the validation split; ECE uses 15 equal-width confidence bins.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``; float64 ``(n, k)`` → ``(n, k)``, rows sum to 1."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of integer ``labels`` ``(n,)`` under ``softmax(logits/T)``."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature in ``[lo, hi]`` minimising :func:`nll` (golden-section search on log T).

    Args:
        logits: float ``(n, k)`` validation logits; labels: int ``(n,)`` in ``[0, k)``.
    Returns:
        ``T`` (float, > 0). 1.0 when ``n == 0``.
    """
    if len(labels) == 0:
        return 1.0
    a, b = np.log(lo), np.log(hi)
    grid = np.linspace(a, b, 41)
    best = grid[int(np.argmin([nll(logits, labels, np.exp(g)) for g in grid]))]
    a, b = max(a, best - (b - a) / 40), min(b, best + (b - a) / 40)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(logits, labels, np.exp(c)) < nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|`` over equal-width confidence bins.

    Args:
        probs: float ``(n, k)`` predicted probabilities; labels: int ``(n,)``.
    Returns:
        ECE in [0, 1]; 0.0 when ``n == 0``.
    """
    if len(labels) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)
