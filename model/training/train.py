"""Training the cascade: stage 1 (manufacturer) and one stage-2 model per manufacturer over its
*leaves* (ICAO types, and "<family> family" for families known only without a usable type),
calibrated by temperature scaling, evaluated, exported as a model version.

Data: one or more datasets of the shared schema (renders from ``synth``, imported or scraped
photos), read by :func:`model.data.read_metadata`. Rows keep their ``domain`` (render or photo)
and ``source``; training weights balance manufacturers, their families and the two domains
(:func:`model.training.weighting.balanced_weights`), so 417 Airbus photos are not drowned by 4,244 Boeings.
Early stopping and calibration use the validation *photos* whenever there are any.

Two training modes, chosen by the backbone:

- ``lite0`` / ``lite2`` / ``vgg16-frozen`` (the registry :mod:`model.backbones`): features of the
  ImageNet backbone computed once and cached on disk by image sha256 (:mod:`model.training.features`);
  both stages are trained together on them (:mod:`model.training.joint`): with ``--fine-tune`` the
  backbone's upper part (above its default cut) is fine-tuned on cached feature maps, else a
  small head is trained on pooled features. ``--photo-views N`` adds N photo-like augmented
  views of every training photo (:mod:`model.training.augment`). The exported models are backbone + head.
- ``compact`` (and ``vgg16`` fine-tuning): images → augmentation (Keras layers in the tf.data
  graph) → CNN per stage, early stopping on validation loss, best weights kept (stage 2 over
  ICAO types only).

The steps live beside this module: :mod:`.config` (settings), :mod:`.prepare` (rows, pixels,
localizer, targets), :mod:`.fit` (the networks), :mod:`.export` (calibration, reference image,
version folder), :mod:`.card` (model card), :mod:`.report` (the test-split report).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from .. import evaluate as mev
from .. import io as mio
from ..cascade import Cascade
from . import tracking
from .card import fmt, model_card
from .config import TrainConfig, log
from .export import choose_reference, export_version
from .fit import fit_cascade
from .prepare import Prepared, aircraft_boxes, prepare, split_rows
from .report import test_report, write_test_report


#: Keys of the test report (:func:`model.evaluate.evaluate` on a loaded version) left out of the
#: version's metrics.json, which never had them.
TEST_ECE = ("stage1_test_ece_before", "stage1_test_ece_after")


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, evaluate and export a cascade from ``cfg.data`` (one dataset or several),
    tracked as one MLflow run named after the version (:mod:`model.training.tracking`). The
    test-split evaluation is also written as ``<reports_dir>/metrics.json`` and figures (what
    ``python -m model evaluate`` writes), after the version.

    Returns:
        The new version folder (``models/<version>``); ``models/latest`` points to it.
    Raises:
        model.data.DatasetError: unusable dataset; ValueError: a split lacks a manufacturer.
    """
    version = cfg.version or mio.new_version()
    with tracking.start(tracking.TRAIN_EXPERIMENT, version, cfg) as run:
        path, report, evaluated = _train(cfg, version)
        run.log_version(path, Path(cfg.reports_dir) / "figures")
        write_test_report(cfg.reports_dir, report, run, since=evaluated)
    return path


def _evaluate_test(cfg: TrainConfig, prep: Prepared, sel: dict, cascade: Cascade, train_type_counts: dict) -> dict:
    """The test split's figures (:func:`model.evaluate.evaluate_domains` on its Airbus and Boeing
    rows, confusion matrices under ``<reports_dir>/figures``) and, with a localizer, the
    out-of-scope figures over every test row: ``{"test"?, "real"?, "out_of_scope"?}``."""
    df, pixels, figures = prep.df, prep.pixels, Path(cfg.reports_dir) / "figures"
    test = sel["test"][df["manufacturer"].iloc[sel["test"]].isin(["Airbus", "Boeing"]).to_numpy()]
    out = mev.evaluate_domains(cascade, df.iloc[test], pixels[test], figures_dir=figures,
                               train_type_counts=train_type_counts, boxes=aircraft_boxes(prep, test),
                               aircraft=None if prep.aircraft is None else prep.aircraft[test])
    if cascade.localizer is not None:
        every = sel["test"]
        out["out_of_scope"] = mev.out_of_scope(cascade, df.iloc[every], pixels[every], prep.aircraft[every],
                                               aircraft_boxes(prep, every), figures_dir=figures)
    for section in ("real", "test"):
        if out.get(section):
            m = out[section]
            log(f"{section} test: n {m['n']}, manufacturer balanced acc {fmt(m['manufacturer_balanced_accuracy'])}, "
                f"family {fmt(m['family_accuracy'])}, type top-1 {fmt(m['type_top1'])}")
    if out.get("out_of_scope"):
        flat = {k: v for k, v in out["out_of_scope"].items() if not isinstance(v, (dict, list))}
        log(f"out of scope: {json.dumps(flat)}")
    return out


def _training_metrics(cfg: TrainConfig, df: pd.DataFrame, sel: dict, version: str, cascade: Cascade,
                      calibration: dict, history: dict, seconds: dict) -> dict:
    """metrics.json's training part: config, counts per split, type counts, calibration, gate, history."""
    train_rows = df.iloc[sel["train"]]
    photo_type_counts = train_rows[train_rows["domain"] == "photo"]["icao_type"].value_counts().to_dict()
    return {
        "version": version,
        "config": cfg.as_dict(),
        "counts": {s: {f"{d}/{m}": int(n) for (d, m), n in df.iloc[sel[s]].groupby(["domain", "manufacturer"])
                       .size().items()} for s in sel},
        "type_counts_train": {m: sub.value_counts().to_dict()
                              for m, sub in train_rows.groupby("manufacturer")["icao_type"]},
        "photo_type_counts_train": {k: int(v) for k, v in photo_type_counts.items() if k},
        "calibration": calibration,
        "aircraft_gate": (cascade.info or {}).get("aircraft_gate"),
        "history": history,
        "train_seconds": seconds,
    }


def _train(cfg: TrainConfig, version: str) -> tuple[Path, dict, float]:
    """:func:`train`'s work, without the tracking: ``(version folder, test report, time the
    test evaluation started)``."""
    t0 = time.time()
    prep = prepare(cfg)
    df, spec = prep.df, prep.spec
    log(f"version {version}: {len(df)} images ({(df['domain'] == 'photo').sum()} photos), "
        f"backbone {cfg.backbone}, input {spec.input_shape}")
    sel = split_rows(df)
    cascade, labels, calibration, history, seconds, _ = fit_cascade(cfg, prep, sel, version)
    metrics = _training_metrics(cfg, df, sel, version, cascade, calibration, history, seconds)
    evaluated = time.time()
    # as the loaded version will have it: the test ECE before/after temperature scaling (the report's)
    cascade.info = {**(cascade.info or {}), "metrics": {"calibration": calibration}}
    sections = _evaluate_test(cfg, prep, sel, cascade, metrics["photo_type_counts_train"])
    metrics.update({k: {kk: vv for kk, vv in v.items() if kk not in TEST_ECE} if k in ("test", "real") else v
                    for k, v in sections.items()})
    reference = choose_reference(cascade, df.iloc[sel["test"]])
    if reference is not None:
        metrics["reference_image"] = reference[1]
        log(f"reference image: {json.dumps(reference[1])}")
    metrics["total_seconds"] = round(time.time() - t0, 1)
    path = export_version(cfg, cascade, labels, metrics, model_card(cfg, df, labels, metrics, version),
                          reference=None if reference is None else reference[0])
    log(f"saved {path} in {time.time() - t0:.0f}s total")
    report = test_report({k: v for k, v in sections.items() if k in ("test", "real")},
                         sections.get("out_of_scope"), "test", cfg.data, calibration)
    return path, report, evaluated
