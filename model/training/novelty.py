"""The version's confidence rule (:class:`model.confidence.ConfidenceRule`) fitted at training time:
the feature bank of the training photos and the novelty threshold on the validation photos'
scale, so that a threshold chosen on held-out origins (:mod:`model.training.levers`) carries over to
any training of the recipe.

The threshold is the ``novelty_quantile``-th percentile of the validation photos' k-NN distances
to the bank (Sun et al. 2022 pick theirs so that 95 % of in-distribution data stays: the same
rule, with the share chosen on held-out origins).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import confidence as conf
from .. import preprocessing as pp
from .config import TrainConfig, log

#: Training photos in a version's bank at most (a seeded sample): 4,000 x 1,280 float16 = 10 MB.
MAX_BANK = 4000


def photo_features(cascade, pixels: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Penultimate stage-1 features ``(len(rows), D)`` float32 of uint8 pixels ``pixels[rows]``
    (:func:`model.confidence.feature_model`). Raises ValueError: a stage 1 without them."""
    fm = conf.feature_model(cascade.stage1)
    out = [np.asarray(fm.predict_on_batch(pp.scale(pixels[rows[s:s + batch_size]], cascade.spec))[1])
           for s in range(0, len(rows), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, fm.output_shape[1][-1]), np.float32)


def fit_confidence(cfg: TrainConfig, cascade, df, pixels: np.ndarray, sel: dict) -> dict | None:
    """Switch the configuration's confidence rule on in ``cascade`` (in place) and return it as
    ``labels["confidence"]`` (``None`` when the configuration asks for none).

    With ``cfg.novelty_quantile``: the bank is the training photos' features (at most
    :data:`MAX_BANK`, a seeded sample; ``cascade.bank``, unit length), the threshold the
    quantile of the validation photos' k-NN distances (``cfg.novelty_k``). Data without photos
    (renders alone) uses every training and validation row instead. With ``cfg.views``:
    the mirror image and the zoomed crop must agree.

    Raises:
        ValueError: novelty asked for with a stage 1 without penultimate features (compact,
            VGG16), or with no training or validation photos.
    """
    if cfg.novelty_quantile is None and not cfg.views:
        return None
    rule = conf.ConfidenceRule(views=bool(cfg.views), k=cfg.novelty_k)
    if cfg.novelty_quantile is not None:
        photos = (df["domain"] == "photo").to_numpy()
        tr, va = (sel[s][photos[sel[s]]] for s in ("train", "validation"))
        if len(tr) < cfg.novelty_k or not len(va):  # no photos: every row
            tr, va = sel["train"], sel["validation"]
        if len(tr) < cfg.novelty_k or not len(va):
            raise ValueError(f"novelty needs >= {cfg.novelty_k} training images and a validation image "
                             f"({len(tr)} and {len(va)})")
        if len(tr) > MAX_BANK:
            tr = np.sort(np.random.default_rng(cfg.seed).choice(tr, MAX_BANK, replace=False))
        bank = conf.unit(photo_features(cascade, pixels, tr))
        d_val = conf.knn_distance(photo_features(cascade, pixels, va), bank, cfg.novelty_k)
        rule.novelty_threshold = round(float(np.quantile(d_val, cfg.novelty_quantile / 100)), 5)
        cascade.bank = bank
        log(f"novelty: bank of {len(bank)} training photos, k={cfg.novelty_k}, threshold "
            f"{rule.novelty_threshold} (validation photos' {cfg.novelty_quantile}th percentile)")
    cascade.confidence = rule
    return rule.as_dict()


def add_confidence(model_dir, novelty_quantile: float | None, novelty_k: int = 10, views: bool = False,
                   models_dir=None) -> Path:
    """A new version with a confidence rule, from an existing one without retraining: the same
    networks, the rule fitted on the version's own training and validation photos (its
    ``metrics.json`` ``config``: data, seed, image size; :func:`fit_confidence`), its test split
    evaluated again with the rule (``metrics.json``'s ``test`` / ``real`` / ``out_of_scope``, and
    ``<reports_dir>/metrics.json`` as ``python -m model train`` writes it), tracked as a run of
    the ``train`` experiment named after the new version. The source version is left as it is;
    ``models/latest`` points to the new one.

    Args:
        model_dir: the version folder (``models/latest`` is followed).
        novelty_quantile / novelty_k / views: as ``python -m model train`` takes them.
        models_dir: where the new version goes (default: the source version's parent folder).
    Returns:
        The new version folder.
    Raises:
        model.io.ModelLoadError: the version does not load. ValueError: its metrics.json has no
        training config, or the rule cannot be fitted (see :func:`fit_confidence`).
    """
    from .. import io as mio
    from ..cascade import Cascade
    from . import tracking
    from .prepare import prepare, split_rows
    from .report import test_report, write_test_report
    from .train import TEST_ECE, _evaluate_test

    src = Path(model_dir).resolve()
    info = mio.read_version_info(src)
    config = dict(info["metrics"].get("config") or {})
    if not config.get("data"):
        raise ValueError(f"{src}/metrics.json holds no training config: train the version again with the flags")
    known = set(TrainConfig.__dataclass_fields__) - {"extra"}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in known})
    cfg.novelty_quantile, cfg.novelty_k, cfg.views = novelty_quantile, novelty_k, views
    cascade = Cascade.load(src)
    cascade.version = version = mio.new_version()
    with tracking.start(tracking.TRAIN_EXPERIMENT, version, cfg,
                        extra_params={"derived_from": info["version"]}) as run:
        prep = prepare(cfg)
        sel = split_rows(prep.df)
        rule = fit_confidence(cfg, cascade, prep.df, prep.pixels, sel)
        cascade.bank = cascade.bank if rule and rule.get("novelty_threshold") is not None else None
        labels = {**cascade.labels, "confidence": rule} if rule else {
            k: v for k, v in cascade.labels.items() if k != "confidence"}
        cascade.labels = labels
        evaluated = time.time()
        sections = _evaluate_test(cfg, prep, sel, cascade, info["metrics"].get("photo_type_counts_train") or {})
        metrics = {**info["metrics"], "config": cfg.as_dict(), "derived_from": info["version"],
                   **{k: {kk: vv for kk, vv in v.items() if kk not in TEST_ECE} if k in ("test", "real") else v
                      for k, v in sections.items()}}
        card = (src / mio.MODEL_CARD).read_text() if (src / mio.MODEL_CARD).is_file() else ""
        card += (f"\n\nDerived from version `{info['version']}` with the confidence rule "
                 f"`{json.dumps(rule)}` (python -m model confidence; the networks are unchanged; the "
                 "test-split figures in metrics.json are measured again with the rule).\n")
        out = mio.save_version(models_dir or src.parent, cascade.stage1, cascade.stage2, labels, cascade.spec,
                               metrics, card, version=version, localizer=cascade.localizer,
                               reference=mio.reference_image_bytes(src), bank=cascade.bank)
        run.log_version(out, Path(cfg.reports_dir) / "figures")
        report = test_report({k: v for k, v in sections.items() if k in ("test", "real")},
                             sections.get("out_of_scope"), "test", cfg.data, (info["metrics"].get("calibration") or {}))
        write_test_report(cfg.reports_dir, report, run, since=evaluated)
    log(f"saved {out} (from {info['version']}, confidence {json.dumps(rule)})")
    return out
