"""Measures of predicted probabilities: softmax, negative log-likelihood and expected
calibration error, shared by evaluation (:mod:`model.evaluate`) and by temperature scaling in
training (:mod:`model.training.calibration`).

Source: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017: ECE
uses 15 equal-width confidence bins.
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
