"""Temperature scaling: one temperature ``T > 0`` divides a model's validation logits, fitted by
minimising the negative log-likelihood, and the exported model ends in ``Rescaling(1/T)`` and a
softmax.

Source: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017. The
measures (softmax, NLL, ECE) are :mod:`model.metrics`.
"""

from __future__ import annotations

import numpy as np

from ..metrics import expected_calibration_error, nll, softmax


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


def calibration_report(z_va: np.ndarray, y_va: np.ndarray) -> dict:
    """Temperature-scaling report from validation logits ``(n, k)`` and int labels ``(n,)``.

    Returns:
        ``{"temperature", "n_val", "val_nll_before", "val_nll_after", "val_ece_before",
        "val_ece_after", "val_accuracy"}`` (NLL in nats, ECE in [0, 1]; ``None`` where
        ``n_val == 0``, except the ECEs, which are 0.0 then, and the temperature, 1.0).
    """
    t = fit_temperature(z_va, y_va) if len(y_va) else 1.0
    return {
        "temperature": t,
        "n_val": int(len(y_va)),
        "val_nll_before": nll(z_va, y_va, 1.0) if len(y_va) else None,
        "val_nll_after": nll(z_va, y_va, t) if len(y_va) else None,
        "val_ece_before": expected_calibration_error(softmax(z_va, 1.0), y_va),
        "val_ece_after": expected_calibration_error(softmax(z_va, t), y_va),
        "val_accuracy": float((z_va.argmax(1) == y_va).mean()) if len(y_va) else None,
    }


def calibrated(model, temperature: float, name: str):
    """``model`` (→ logits) followed by ``Rescaling(1/T)`` and ``Softmax``: calibrated probabilities."""
    import keras  # deferred: TensorFlow start-up

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    z = model(inputs)
    z = keras.layers.Rescaling(1.0 / temperature, name="temperature")(z)
    probs = keras.layers.Softmax(name="probabilities")(z)
    return keras.Model(inputs, probs, name=name)


def calibrate(name: str, model, z_va: np.ndarray, y_va: np.ndarray) -> tuple[object, dict]:
    """Fit a temperature on validation logits ``z_va`` ``(n, k)``; returns ``(calibrated_model, report)``
    (the report of :func:`calibration_report`)."""
    report = calibration_report(z_va, y_va)
    return calibrated(model, report["temperature"], name), report
