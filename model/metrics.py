"""Measures of predicted probabilities: softmax, negative log-likelihood, expected calibration
error and the selective-prediction figures (risk-coverage curve, AURC, accuracy at a coverage, the
share and accuracy of "sure" answers), shared by evaluation (:mod:`model.evaluate`) and by temperature scaling in
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


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve of selective prediction: answers kept from the most confident down.

    Source: Geifman & El-Yaniv, "Selective Classification for Deep Neural Networks", NeurIPS 2017
    (risk-coverage curve); ties in confidence are kept in input order (stable sort).

    Args:
        confidence: float ``(n,)``, higher = surer. correct: bool ``(n,)``, the answer is right.
    Returns:
        ``(coverage, risk)``: float64 ``(n,)`` each; entry ``k-1`` is the share ``k/n`` of answers
        kept and the error rate among them. Empty arrays when ``n == 0``.
    """
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    wrong = 1.0 - np.asarray(correct, np.float64)[order]
    k = np.arange(1, len(order) + 1, dtype=np.float64)
    return k / max(1, len(order)), np.cumsum(wrong) / k


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """Area under the risk-coverage curve (:func:`risk_coverage`): the mean risk over the coverages
    ``1/n, 2/n, ..., 1`` (Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep
    Neural Classifiers", ICLR 2019). In [0, 1], lower is better; ``None`` when ``n == 0``."""
    if len(confidence) == 0:
        return None
    return float(np.mean(risk_coverage(confidence, correct)[1]))


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float = 0.8) -> float | None:
    """Accuracy of the ``ceil(coverage * n)`` most confident answers (``coverage`` in (0, 1]);
    ``None`` when ``n == 0``."""
    n = len(confidence)
    if n == 0:
        return None
    k = max(1, int(np.ceil(coverage * n - 1e-9)))
    return float(1.0 - risk_coverage(confidence, correct)[1][k - 1])


def selective_figures(confidence: np.ndarray, correct: np.ndarray, sure: np.ndarray) -> dict:
    """The confidence figures of one set of answers.

    Args:
        confidence: float ``(n,)`` (the answer's probability); correct: bool ``(n,)``; sure: bool
            ``(n,)``, the answer was given without "unsure".
    Returns:
        ``aurc`` (:func:`aurc`), ``accuracy_at_80`` (:func:`accuracy_at_coverage` at 0.8),
        ``sure_coverage`` (share of answers given without "unsure") and ``sure_accuracy`` (their
        accuracy; ``None`` when none is sure); all ``None`` when ``n == 0``.
    """
    confidence, correct, sure = (np.asarray(a) for a in (confidence, correct, sure))
    n = len(confidence)
    return {"aurc": aurc(confidence, correct), "accuracy_at_80": accuracy_at_coverage(confidence, correct, 0.8),
            "sure_coverage": float(sure.mean()) if n else None,
            "sure_accuracy": float(correct[sure.astype(bool)].mean()) if sure.any() else None}
