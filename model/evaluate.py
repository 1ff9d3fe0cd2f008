"""End-to-end evaluation of a cascade on a labelled split, with confusion matrices as PNG:
manufacturer (accuracy, balanced accuracy, recalls), family, ICAO type top-1/top-3, calibration,
each figure also per source (renders and each photo collection are reported apart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import negatives as neg
from . import preprocessing as pp
from .cascade import Cascade, is_type_leaf
from .metrics import expected_calibration_error, selective_figures, softmax
from .pipeline import Pipeline, as_pipeline


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
    import matplotlib  # deferred: matplotlib start-up (~0.8 s), only when figures are written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: after choosing the Agg backend

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


def _rate(ok: np.ndarray) -> float | None:
    return float(np.mean(ok)) if len(ok) else None


def summarise(true_m: list[str], true_f: list[str], true_t: list[str], preds: list[dict], p_m: np.ndarray,
              manufacturers: list[str], type_classes: set[str], frequent_types: set[str]) -> dict:
    """The figures of one set of classified images (all of a split, or one source of it).

    Args:
        true_m, true_f, true_t: true manufacturer, family ('' unknown) and ICAO type ('' unknown).
        preds: :meth:`Cascade.predict` results (``top_k`` >= 3) in the same order.
        p_m: calibrated stage-1 probabilities ``(n, len(manufacturers))``.
        type_classes: ICAO types the model was trained on (stage-2 type leaves).
        frequent_types: the subset with >= 50 training photos (the issue's target set).
    Returns:
        ``n``; ``manufacturer_accuracy``; ``manufacturer_balanced_accuracy`` (mean recall over the
        manufacturers present); ``recall`` per manufacturer; ``family_accuracy`` (answer's family
        vs the true family, rows with a known family; ``n_family``); ``type_top1``/``type_top3``
        (the true type among the first 1/3 ``top_k`` types, rows whose true type is a trained
        class; ``n_type``), the same over :data:`frequent_types` (``type_top1_frequent``,
        ``type_top3_frequent``, ``n_type_frequent``); ``answer_levels`` (share answered at type,
        family, manufacturer level); ``named_type_precision`` (named types that are right);
        ``ece`` (stage 1, 15 bins); ``manufacturer_selective``: the confidence figures of the
        manufacturer answers (:func:`model.metrics.selective_figures`: AURC, accuracy at 80 %
        coverage, the share and accuracy of answers given without "unsure"; the confidence is the
        answer's P(manufacturer), a "not an aircraft" answer counts as given and wrong). ``None``
        where a figure has no rows.
    """
    n = len(preds)
    pm = np.array([p["manufacturer"]["label"] for p in preds], dtype=object)
    tm = np.array(true_m, dtype=object)
    recall = {m: _rate(pm[tm == m] == m) for m in manufacturers if (tm == m).any()}
    fam_rows = [i for i, f in enumerate(true_f) if f]
    type_rows = [i for i, t in enumerate(true_t) if t in type_classes]
    freq_rows = [i for i in type_rows if true_t[i] in frequent_types]

    def top_types(i: int, k: int) -> list:
        return [c["type"] for c in preds[i]["top_k"][:k]]

    named = [i for i, p in enumerate(preds) if p["type"]["label"] and true_t[i]]
    levels = [p["answer"]["level"] for p in preds]
    y = np.array([manufacturers.index(m) for m in true_m]) if n else np.zeros(0, int)
    return {
        "n": n,
        "manufacturer_accuracy": _rate(pm == tm),
        "manufacturer_balanced_accuracy": float(np.mean(list(recall.values()))) if recall else None,
        "recall": recall,
        "family_accuracy": _rate(np.array([preds[i]["family"]["label"] == true_f[i] for i in fam_rows])),
        "n_family": len(fam_rows),
        "type_top1": _rate(np.array([true_t[i] in top_types(i, 1) for i in type_rows])),
        "type_top3": _rate(np.array([true_t[i] in top_types(i, 3) for i in type_rows])),
        "n_type": len(type_rows),
        "type_top1_frequent": _rate(np.array([true_t[i] in top_types(i, 1) for i in freq_rows])),
        "type_top3_frequent": _rate(np.array([true_t[i] in top_types(i, 3) for i in freq_rows])),
        "n_type_frequent": len(freq_rows),
        "answer_levels": {lv: levels.count(lv) / n for lv in ("type", "family", "manufacturer")} if n else {},
        "named_type_precision": _rate(np.array([preds[i]["type"]["label"] == true_t[i] for i in named])),
        "ece": expected_calibration_error(p_m, y) if n else None,
        "manufacturer_selective": selective_figures(
            [p["branches"][0]["manufacturer_probability"] for p in preds], pm == tm,
            [not p["unsure"] for p in preds]),
    }


def evaluate(cascade: Cascade | Pipeline, df: pd.DataFrame, pixels: np.ndarray, figures_dir: Path | None = None,
             batch_size: int = 64, train_type_counts: dict[str, int] | None = None,
             figure_prefix: str = "", boxes: list | None = None, aircraft: np.ndarray | None = None) -> dict:
    """Score a labelled split end to end.

    Args:
        df: rows of the split (schema columns ``manufacturer``, ``family``, ``icao_type``, ``source``).
        pixels: uint8 ``(len(df), H, W, 3)`` resized with ``cascade.spec``.
        figures_dir: where to write the confusion matrices (``<prefix>confusion_manufacturer.png``,
            ``<prefix>confusion_family.png``, ``<prefix>confusion_type.png``,
            ``<prefix>confusion_type_<m>.png`` with the true manufacturer's stage 2).
        train_type_counts: training images per ICAO type (the figures' "types with >= 50 training
            photos"); default: every trained type counts as frequent.
        boxes, aircraft: per row, the aircraft box the pixels were cut to and the localizer's
            aircraft probability (:meth:`Cascade.predict`); ``None``: whole images, no gate.
    Returns:
        The :func:`summarise` figures of the whole split, ``per_source`` (the same per ``source``),
        and the long-standing keys: ``n_test``, ``manufacturer_accuracy`` (stage 1),
        ``type_accuracy_given_manufacturer`` (stage 2 with the true manufacturer's model, rows
        whose type is a trained class), ``type_accuracy_routed``, ``end_to_end_accuracy``
        (manufacturer right and, where the true type is a trained class, the top type right),
        ``unsure_rate``, ``threshold``, ``type_threshold``, ``model_version``,
        ``n_test_per_manufacturer``, ``stage1_test_ece_before``/``_after`` (temperature scaling).
    """
    true_m = df["manufacturer"].tolist()
    true_t = df["icao_type"].tolist()
    true_f = df["family"].tolist() if "family" in df else [""] * len(df)
    sources = df["source"].tolist() if "source" in df else [""] * len(df)
    preds: list[dict] = []
    oracle_type: list[str | None] = [None] * len(df)
    stage1_probs = []
    pipeline = as_pipeline(cascade)
    cascade = pipeline.cascade
    for s in range(0, len(df), batch_size):
        end = min(s + batch_size, len(df))
        preds += pipeline.forward([pipeline.from_pixels(pixels[i], None if boxes is None else boxes[i],
                                                        None if aircraft is None else float(aircraft[i]))
                                   for i in range(s, end)], top_k=3)
        x = pp.scale(pixels[s:end], cascade.spec)
        stage1_probs.append(np.asarray(cascade.stage1.predict_on_batch(x), np.float64))
        for m, model in cascade.stage2.items():
            rows = [i for i in range(s, min(s + batch_size, len(df))) if true_m[i] == m]
            if not rows:
                continue
            p = np.asarray(model.predict_on_batch(pp.scale(pixels[rows], cascade.spec)))
            for i, k in zip(rows, p.argmax(axis=1)):
                oracle_type[i] = cascade.labels["types"][m][int(k)]
    p_m = np.concatenate(stage1_probs) if stage1_probs else np.zeros((0, len(cascade.manufacturers)))
    type_classes = {t for ts in cascade.labels["types"].values() for t in ts if is_type_leaf(t)}
    frequent = ({t for t in type_classes if train_type_counts.get(t, 0) >= 50} if train_type_counts is not None
                else type_classes)
    metrics = summarise(true_m, true_f, true_t, preds, p_m, cascade.manufacturers, type_classes, frequent)
    metrics["per_source"] = {}
    for src in sorted(set(sources)):
        idx = [i for i, v in enumerate(sources) if v == src]
        metrics["per_source"][src or "(none)"] = summarise(
            [true_m[i] for i in idx], [true_f[i] for i in idx], [true_t[i] for i in idx], [preds[i] for i in idx],
            p_m[idx], cascade.manufacturers, type_classes, frequent)
    pred_m = [p["manufacturer"]["label"] for p in preds]
    top_t = [p["top_k"][0]["type"] for p in preds]
    m_ok = np.array([a == b for a, b in zip(true_m, pred_m)])
    typed = np.array([t in type_classes for t in true_t])
    t_oracle_ok = np.array([a == b for a, b in zip(true_t, oracle_type)])
    t_ok = np.array([a == b for a, b in zip(true_t, top_t)])
    e2e = m_ok & (t_ok | ~typed)
    metrics.update({
        "n_test": int(len(df)),
        "type_accuracy_given_manufacturer": float(t_oracle_ok[typed].mean()) if typed.any() else 0.0,
        "type_accuracy_routed": float(t_ok[m_ok & typed].mean()) if (m_ok & typed).any() else 0.0,
        "end_to_end_accuracy": float(e2e.mean()) if len(df) else 0.0,
        "unsure_rate": float(np.mean([p["unsure"] for p in preds])) if preds else 0.0,
        "threshold": cascade.threshold,
        "type_threshold": cascade.type_threshold,
        "model_version": cascade.version,
        "n_test_per_manufacturer": {m: int(sum(1 for t in true_m if t == m)) for m in cascade.manufacturers},
    })
    temperature = (((cascade.info or {}).get("metrics") or {}).get("calibration") or {}).get(
        "manufacturer", {}).get("temperature")
    if len(p_m) and temperature:
        # the exported model outputs softmax(z / T); softmax(T * log p) recovers softmax(z)
        p_before = softmax(temperature * np.log(np.clip(p_m, 1e-12, 1.0)))
        y = np.array([cascade.manufacturers.index(m) for m in true_m])
        metrics["stage1_test_ece_before"] = expected_calibration_error(p_before, y)
        metrics["stage1_test_ece_after"] = expected_calibration_error(p_m, y)
    if figures_dir is not None:
        plot_confusions(cascade, Path(figures_dir), figure_prefix, metrics, true_m, true_f, true_t, preds,
                        oracle_type, type_classes)
    return metrics


def plot_confusions(cascade: Cascade, figures_dir: Path, prefix: str, metrics: dict, true_m: list[str],
                    true_f: list[str], true_t: list[str], preds: list[dict], oracle_type: list, type_classes: set) -> None:
    """:func:`evaluate`'s confusion matrices (PNG, :func:`plot_confusion`) in ``figures_dir``:
    ``<prefix>confusion_manufacturer.png``, ``_family``, ``_type`` (top-1 over the trained types)
    and ``_type_<m>`` (each stage 2 given the true manufacturer, ``oracle_type``)."""
    pred_m = [p["manufacturer"]["label"] for p in preds]
    top_t = [p["top_k"][0]["type"] for p in preds]
    labels_m = cascade.manufacturers
    plot_confusion(confusion(true_m, pred_m, labels_m), labels_m,
                   f"Manufacturer (balanced acc {metrics['manufacturer_balanced_accuracy'] or 0:.3f})",
                   figures_dir / f"{prefix}confusion_manufacturer.png")
    pred_f = [p["family"]["label"] or "" for p in preds]
    labels_f = sorted({f for f in true_f if f} | {f for f in pred_f if f})
    plot_confusion(confusion(true_f, pred_f, labels_f), labels_f,
                   f"Family (acc {metrics['family_accuracy'] or 0:.3f})",
                   figures_dir / f"{prefix}confusion_family.png")
    labels_t = sorted({t for t in true_t if t in type_classes} | {t for t in top_t if t})
    plot_confusion(confusion([t if t in type_classes else "" for t in true_t], [t or "" for t in top_t], labels_t),
                   labels_t, f"ICAO type, top-1 (acc {metrics['type_top1'] or 0:.3f})",
                   figures_dir / f"{prefix}confusion_type.png")
    for m in cascade.stage2:
        rows = [i for i, t in enumerate(true_m) if t == m]
        leaves = cascade.labels["types"][m]
        plot_confusion(confusion([true_t[i] for i in rows], [oracle_type[i] for i in rows], leaves),
                       leaves, f"Stage 2: {m} (true manufacturer)", figures_dir / f"{prefix}confusion_type_{m}.png")


def evaluate_domains(cascade: Cascade, df: pd.DataFrame, pixels: np.ndarray, figures_dir: Path | None = None,
                     train_type_counts: dict[str, int] | None = None, boxes: list | None = None,
                     aircraft: np.ndarray | None = None) -> dict:
    """:func:`evaluate` on the renders and on the photos of a split, apart.

    Args:
        df: rows with a ``domain`` column (``"render"``/``"photo"``, see
            :func:`model.data.read_metadata`); pixels: their uint8 pixels.
    Returns:
        ``{"test": <renders' figures>, "real": <photos' figures>}``, each only when the split has
        such rows; figures go to ``figures_dir`` (``confusion_*.png`` for renders,
        ``real_confusion_*.png`` for photos).
    """
    out = {}
    for key, domain, prefix in (("test", "render", ""), ("real", "photo", "real_")):
        idx = np.flatnonzero((df["domain"] == domain).to_numpy())
        if len(idx):
            out[key] = evaluate(cascade, df.iloc[idx].reset_index(drop=True), pixels[idx], figures_dir=figures_dir,
                                train_type_counts=train_type_counts, figure_prefix=prefix,
                                boxes=None if boxes is None else [boxes[i] for i in idx],
                                aircraft=None if aircraft is None else aircraft[idx])
    return out


#: The out-of-scope confusion matrix's classes: the stage-1 classes and "none" (no aircraft).
SCOPE_LABELS = ("Airbus", "Boeing", "Other", "none")


def out_of_scope(cascade: Cascade | Pipeline, df: pd.DataFrame, pixels: np.ndarray, aircraft: np.ndarray,
                 boxes: list | None = None, figures_dir: Path | None = Path("reports/figures"),
                 n_generated: int = 64) -> dict:
    """How the cascade answers what is not an Airbus or Boeing airliner.

    Args:
        df, pixels, aircraft, boxes: the test rows (photos and renders; only photos count), their
            uint8 pixels as the classifier sees them, the localizer's aircraft probability and
            aircraft boxes.
        n_generated: generated negatives (:func:`model.negatives.generated`, seeds 2 and 3; the
            gate's threshold was chosen on seed 1), beside scikit-image's bundled photos.
    Returns:
        ``other_as_other`` (share of ``Other`` test photos answered ``Other``; ``n_other``),
        ``negatives_as_none`` (share of negatives answered level ``none``; ``n_negatives``, and
        per kind), ``airbus_boeing_out`` (share of Airbus/Boeing test photos answered ``Other``
        or ``none``; ``n_airbus_boeing``; ``airbus_boeing_as_none``, ``airbus_boeing_as_other``),
        ``airbus_boeing_balanced`` (mean Airbus/Boeing recall), ``ece_stage1`` (over the stage-1
        classes, photos), ``confusion`` ``{labels, counts}`` (true vs answered, negatives as
        ``none``), and ``examples`` (a few answers per case). ``None`` where a set is empty.
    """
    photo = (df["domain"] == "photo").to_numpy()
    rows = np.flatnonzero(photo)
    pipeline = as_pipeline(cascade)
    cascade = pipeline.cascade
    preds = []
    for s in range(0, len(rows), 64):
        preds += pipeline.forward([pipeline.from_pixels(pixels[i], None if boxes is None else boxes[i],
                                                        float(aircraft[i])) for i in rows[s:s + 64]], top_k=3)
    true = df["manufacturer"].to_numpy()[rows]
    answered = np.array(["none" if p["answer"]["level"] == "none" else p["manufacturer"]["label"] for p in preds],
                        dtype=object)
    negs = neg.bundled() + neg.generated(n_generated // 2, seed=2) + neg.generated(n_generated // 2, seed=3)
    neg_preds = []
    for s in range(0, len(negs), 16):
        neg_preds += pipeline.predict([im for _, im in negs[s:s + 16]], top_k=3)
    neg_answer = np.array(["none" if p["answer"]["level"] == "none" else p["manufacturer"]["label"]
                           for p in neg_preds], dtype=object)
    other = true == "Other"
    ab = np.isin(true, ["Airbus", "Boeing"])
    recalls = [float(np.mean(answered[true == m] == m)) for m in ("Airbus", "Boeing") if (true == m).any()]
    y = np.array([cascade.manufacturers.index(m) if m in cascade.manufacturers else -1 for m in true])
    keep = y >= 0
    stage1 = []
    for s in range(0, len(rows), 64):
        stage1.append(np.asarray(cascade.probabilities(pp.scale(pixels[rows[s:s + 64]], cascade.spec))[0]))
    p1 = np.concatenate(stage1) if stage1 else np.zeros((0, len(cascade.manufacturers)))
    kinds: dict[str, list[bool]] = {}
    for (name, _), a in zip(negs, neg_answer):
        kinds.setdefault(name.split(":")[0] if name.startswith("skimage") else name.split(":")[1].split("-")[0],
                         []).append(a == "none")
    labels = list(SCOPE_LABELS)
    cm = confusion(list(true) + ["none"] * len(negs), list(answered) + list(neg_answer), labels)
    if figures_dir is not None:
        plot_confusion(cm, labels, "Out of scope: true vs answered (photos + negatives)",
                       Path(figures_dir) / "out_of_scope_confusion.png")
    examples = []
    for case, idx in (("Other", np.flatnonzero(other)[:2]), ("Airbus/Boeing", np.flatnonzero(ab)[:2])):
        examples += [{"case": case, "file": df["image_path"].iat[rows[i]], "answer": preds[i]["answer"],
                      "aircraft": preds[i]["aircraft"]} for i in idx]
    examples += [{"case": "negative", "file": name, "answer": p["answer"], "aircraft": p["aircraft"]}
                 for (name, _), p in list(zip(negs, neg_preds))[:: max(1, len(negs) // 4)]]
    return {
        "other_as_other": _rate(answered[other] == "Other"), "n_other": int(other.sum()),
        "negatives_as_none": _rate(neg_answer == "none"), "n_negatives": len(negs),
        "negatives_as_none_by_kind": {k: float(np.mean(v)) for k, v in sorted(kinds.items())},
        "airbus_boeing_out": _rate(np.isin(answered[ab], ["Other", "none"])), "n_airbus_boeing": int(ab.sum()),
        "airbus_boeing_as_none": _rate(answered[ab] == "none"),
        "airbus_boeing_as_other": _rate(answered[ab] == "Other"),
        "airbus_boeing_balanced": float(np.mean(recalls)) if recalls else None,
        "ece_stage1": expected_calibration_error(p1[keep], y[keep]) if keep.any() else None,
        "stage1_classes": cascade.manufacturers,
        "confusion": {"labels": labels, "counts": cm.tolist()},
        "examples": examples,
    }
