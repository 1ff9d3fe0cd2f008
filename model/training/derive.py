"""A trained version with another confidence rule, without retraining (``python -m model
confidence``, ``make confidence``): :func:`add_confidence`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import io as mio
from ..cascade import Cascade
from . import tracking
from .config import TrainConfig, log
from .novelty import fit_confidence
from .prepare import prepare, split_rows
from .report import test_report, write_test_report
from .train import TEST_ECE, _evaluate_test


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
