"""End-to-end evaluation of a cascade on a labelled split, with confusion matrices as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import calibration as cal
from . import preprocessing as pp
from .cascade import Cascade


def confusion(y_true: list[str], y_pred: list[str], labels: list[str]) -> np.ndarray:
    """Confusion counts ``(len(labels), len(labels))``: rows true, columns predicted; labels not in
    ``labels`` are ignored."""
    index = {l: i for i, l in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def plot_confusion(cm: np.ndarray, labels: list[str], title: str, path: Path) -> Path:
    """Save a confusion matrix heat map (matplotlib, Agg) with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    vmax = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > vmax / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(cascade: Cascade, df: pd.DataFrame, pixels: np.ndarray, figures_dir: Path | None = None,
             batch_size: int = 64) -> dict:
    """Score a labelled split end to end.

    Args:
        df: rows of the split (schema columns ``manufacturer`` and ``icao_type``).
        pixels: uint8 ``(len(df), H, W, 3)`` resized with ``cascade.spec``.
        figures_dir: where to write ``confusion_manufacturer.png`` and ``confusion_type_<m>.png``.
    Returns:
        ``manufacturer_accuracy`` (stage 1), ``type_accuracy_given_manufacturer`` (stage 2 with the
        true manufacturer's type model, on images whose manufacturer has one),
        ``type_accuracy_routed`` (stage 2 on images stage 1 got right), ``end_to_end_accuracy``
        (both right through routing), ``unsure_rate``, ``n_test`` and per-class counts.
    """
    true_m = df["manufacturer"].tolist()
    true_t = df["icao_type"].tolist()
    preds: list[dict] = []
    oracle_type: list[str | None] = []
    stage1_probs = []
    for s in range(0, len(df), batch_size):
        x = pp.scale(pixels[s:s + batch_size], cascade.spec)
        preds += cascade.predict(x, top_k=1)
        stage1_probs.append(np.asarray(cascade.stage1.predict_on_batch(x), np.float64))
        for m, model in cascade.stage2.items():
            rows = [i for i in range(s, min(s + batch_size, len(df))) if true_m[i] == m]
            if not rows:
                continue
            p = np.asarray(model.predict_on_batch(pp.scale(pixels[rows], cascade.spec)))
            for i, k in zip(rows, p.argmax(axis=1)):
                while len(oracle_type) <= i:
                    oracle_type.append(None)
                oracle_type[i] = cascade.labels["types"][m][int(k)]
    oracle_type += [None] * (len(df) - len(oracle_type))
    pred_m = [p["manufacturer"]["label"] for p in preds]
    pred_t = [p["type"]["label"] for p in preds]
    m_ok = np.array([a == b for a, b in zip(true_m, pred_m)])
    has_types = np.array([m in cascade.stage2 for m in true_m])
    t_oracle_ok = np.array([a == b for a, b in zip(true_t, oracle_type)])
    t_ok = np.array([a == b for a, b in zip(true_t, pred_t)])
    e2e = m_ok & (t_ok | ~has_types)
    metrics = {
        "n_test": int(len(df)),
        "manufacturer_accuracy": float(m_ok.mean()) if len(df) else 0.0,
        "type_accuracy_given_manufacturer": float(t_oracle_ok[has_types].mean()) if has_types.any() else 0.0,
        "type_accuracy_routed": float(t_ok[m_ok & has_types].mean()) if (m_ok & has_types).any() else 0.0,
        "end_to_end_accuracy": float(e2e.mean()) if len(df) else 0.0,
        "unsure_rate": float(np.mean([p["unsure"] for p in preds])) if preds else 0.0,
        "threshold": cascade.threshold,
        "model_version": cascade.version,
        "n_test_per_manufacturer": {m: int(sum(1 for t in true_m if t == m)) for m in cascade.manufacturers},
    }
    temperature = (((cascade.info or {}).get("metrics") or {}).get("calibration") or {}).get(
        "manufacturer", {}).get("temperature")
    if stage1_probs and temperature:
        # the exported model outputs softmax(z / T); softmax(T * log p) recovers softmax(z)
        p_after = np.concatenate(stage1_probs)
        p_before = cal.softmax(temperature * np.log(np.clip(p_after, 1e-12, 1.0)))
        y = np.array([cascade.manufacturers.index(m) for m in true_m])
        metrics["stage1_test_ece_before"] = cal.expected_calibration_error(p_before, y)
        metrics["stage1_test_ece_after"] = cal.expected_calibration_error(p_after, y)
    if figures_dir is not None:
        figures_dir = Path(figures_dir)
        labels_m = cascade.manufacturers
        plot_confusion(confusion(true_m, pred_m, labels_m), labels_m,
                       f"Stage 1: manufacturer (acc {metrics['manufacturer_accuracy']:.3f})",
                       figures_dir / "confusion_manufacturer.png")
        for m in cascade.stage2:
            rows = [i for i, t in enumerate(true_m) if t == m]
            labels_t = cascade.labels["types"][m]
            plot_confusion(confusion([true_t[i] for i in rows], [oracle_type[i] for i in rows], labels_t),
                           labels_t, f"Stage 2: {m} types (true manufacturer)",
                           figures_dir / f"confusion_type_{m}.png")
        plot_confusion(confusion([f"{a}/{b}" for a, b in zip(true_m, true_t)],
                                 [f"{a}/{b}" for a, b in zip(pred_m, pred_t)],
                                 sorted({f"{a}/{b}" for a, b in zip(true_m, true_t)})),
                       sorted({f"{a}/{b}" for a, b in zip(true_m, true_t)}),
                       f"End to end (acc {metrics['end_to_end_accuracy']:.3f})",
                       figures_dir / "confusion_end_to_end.png")
    return metrics
