"""Export: calibrated image models from a trained network (:func:`calibrate_and_export`), the
version's reference image (:func:`choose_reference`: a test-split render the version answers
Airbus or Boeing) and the version folder itself (:func:`export_version`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io as mio
from .. import preprocessing as pp
from ..cascade import Cascade
from ..pipeline import Pipeline
from . import joint
from .calibration import calibrated, calibration_report
from .config import TrainConfig, log

#: Test renders tried as the reference image (the first ones in file order).
REFERENCE_CANDIDATES = 64


def calibrate_and_export(model, z: dict, df: pd.DataFrame, va: np.ndarray, y_va: np.ndarray, mask_va: np.ndarray,
                         lab_va: np.ndarray, columns: dict, cfg: TrainConfig, spec: pp.PreprocessingSpec,
                         cut: str | None, inputs: str):
    """Temperatures from the validation logits ``z`` (stage 1 on every row, stage 2 per
    manufacturer on the rows labelled with one of its leaves), then the calibrated image models
    (:func:`model.training.joint.export`).

    Args:
        z: ``{"manufacturer": (n, M), "leaves": (n, L)}`` logits of the rows ``va`` of ``df``;
        y_va: int ``(n,)`` manufacturer index; mask_va: float ``(n, L)`` leaf mask; lab_va: bool
        ``(n,)`` rows with a stage-2 target; columns: ``{manufacturer: [leaf columns]}``;
        cut / inputs: as :func:`model.training.joint.export` takes them.
    Returns:
        ``(stage1, {manufacturer: stage2}, calibration report)``.
    """
    calibration = {"manufacturer": calibration_report(z["manufacturer"], y_va)}
    stage1_logits, stage2_logits = joint.export(model, cfg.backbone, spec, cfg.weights, cut, columns, inputs=inputs)
    stage1 = calibrated(stage1_logits, calibration["manufacturer"]["temperature"], "manufacturer")
    stage2 = {}
    for m, cols in columns.items():
        # calibrate on the validation rows labelled with one leaf of m (not family-only rows)
        single = (df.loc[va, "manufacturer"].to_numpy() == m) & lab_va & (mask_va.sum(1) == 1)
        z_m = z["leaves"][single][:, cols]
        calibration[f"type_{m}"] = calibration_report(z_m, mask_va[single][:, cols].argmax(1))
        stage2[m] = calibrated(stage2_logits[m], calibration[f"type_{m}"]["temperature"], f"type_{m}")
    for name, rep in calibration.items():
        log(f"{name}: val acc {rep['val_accuracy'] if rep['val_accuracy'] is not None else float('nan'):.3f} "
            f"(n {rep['n_val']}), T={rep['temperature']:.3f}, "
            f"ECE {rep['val_ece_before']:.3f} -> {rep['val_ece_after']:.3f}")
    return stage1, stage2, calibration


def _png(path: str) -> bytes:
    """The image file as PNG bytes (RGB, EXIF orientation applied; lossless)."""
    buf = io.BytesIO()
    pp.decode_image(path).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def choose_reference(cascade: Cascade, test: pd.DataFrame,
                     candidates: int = REFERENCE_CANDIDATES) -> tuple[bytes, dict] | None:
    """The version's reference image (``reference.png``; ``GET /names`` classifies it): a
    *render* of the test split (FlightGear-derived, redistributable; never a photo) that the
    version answers ``Airbus`` or ``Boeing`` through its serving path
    (:meth:`model.pipeline.Pipeline.predict` on the PNG bytes: gate, crop, both stages).

    Among the first ``candidates`` Airbus/Boeing test renders (by image path), the one with the
    highest probability of its answered manufacturer wins; when none is answered Airbus or
    Boeing, the one with the highest Airbus + Boeing probability that passes the gate.

    Args:
        test: test-split rows (schema columns, ``abs_path``, ``domain``).
    Returns:
        ``(png bytes, {"image_path", "source", "manufacturer", "answer", "probability"})``, or ``None`` when the
        split has no usable render (the version keeps the synthetic reference image).
    """
    rows = test[(test["domain"] == "render") & test["manufacturer"].isin(["Airbus", "Boeing"])]
    rows = rows.sort_values("image_path").head(candidates)
    if rows.empty:
        return None
    images = [_png(p) for p in rows["abs_path"]]
    answers = Pipeline(cascade).predict(images, top_k=1)
    best, best_key = None, None
    for k, a in enumerate(answers):
        if a["answer"]["level"] == "none":
            continue
        p_ab = sum(b["manufacturer_probability"] for b in a["branches"] if b["manufacturer"] in ("Airbus", "Boeing"))
        named = a["manufacturer"]["label"] in ("Airbus", "Boeing")
        key = (named, a["manufacturer"]["probability"] if named else p_ab)
        if best_key is None or key > best_key:
            best, best_key = k, key
    if best is None:
        return None
    row, a = rows.iloc[best], answers[best]
    return images[best], {"image_path": row["image_path"], "source": row["source"],
                          "manufacturer": a["manufacturer"]["label"], "answer": a["answer"]["label"],
                          "probability": a["manufacturer"]["probability"]}


def export_version(cfg: TrainConfig, cascade: Cascade, labels: dict, metrics: dict, card: str,
                   reference: bytes | None = None) -> Path:
    """Write the version folder (:func:`model.io.save_version`) with ``reference`` (PNG bytes, e.g.
    :func:`choose_reference`'s) as its reference image; ``models/latest`` points to it."""
    return mio.save_version(cfg.models_dir, cascade.stage1, cascade.stage2, labels, cascade.spec, metrics, card,
                            version=cascade.version, localizer=cascade.localizer, reference=reference,
                            bank=cascade.bank)
