"""Leave-one-source-out evaluation (``make eval-sources``): how the recipe does on photos from a
collection it never saw, the figure that predicts what a new collection gets.

Photo sources are grouped by *origin* (:func:`origin_of`): the FGVC-Aircraft-derived folders
(``tritinvo18-fgvc-subset20``, ``arkhesiae-alys2-fgvc``, ``fgvc-other-aircraft`` and any import of
FGVC itself) are one origin, since they share photographers, years and style. For each origin the
cascade is trained on every other row (renders and composites always stay in training; the held-out
origin's photos leave every split), validated on the remaining validation photos, and scored on all
of the held-out origin's photos. The pixel, localizer and feature caches are shared by the folds
(:func:`model.training.prepare.prepare` runs once), so a fold repeats only the training that depends on its
rows.

Per held-out origin: balanced manufacturer accuracy over Airbus/Boeing (an origin with one
manufacturer only — fewer than :data:`MIN_MANUFACTURER_PHOTOS` photos of the other — reports that
manufacturer's recall), family accuracy and type top-1, and the confidence figures of the
manufacturer answers (:func:`model.metrics.selective_figures`: AURC, accuracy at 80 % coverage,
the share and accuracy of the answers given without "unsure"; ECE); then their mean over the
origins (:data:`MEAN_KEYS`). Written
to ``reports/sources.json`` and as a Markdown table to ``reports/sources.md``; every scored photo's
answer (stage-1 probabilities, the answer, unsure, the leading joint probabilities) to
``reports/sources_predictions/<label>.csv`` (:func:`prediction_rows`), so that confidence levers
that need no retraining (temperatures fitted on held-out origins, margins, reasons) can be
measured on them.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from .. import confidence as conf
from .. import evaluate as mev
from .. import io as mio
from .. import preprocessing as pp
from ..pipeline import Pipeline
from . import tracking
from .config import TrainConfig, log
from .fit import fit_cascade
from .novelty import MAX_BANK, bank_rows, photo_features
from .prepare import Prepared, aircraft_boxes, prepare

#: Photos a manufacturer needs in a held-out origin to count in its balanced accuracy.
MIN_MANUFACTURER_PHOTOS = 20


def origin_of(source: str) -> str:
    """The origin of a photo source: ``"fgvc"`` for FGVC-Aircraft-derived folders (their name
    holds ``fgvc``), else the source's first dash-separated word (``davidnh8``, ``burakkurt07``)."""
    s = str(source).lower()
    if "fgvc" in s:
        return "fgvc"
    return s.split("-")[0] or "(none)"


def _figures(metrics: dict, n_by_maker: dict) -> dict:
    recall = metrics.get("recall") or {}
    counted = [m for m in ("Airbus", "Boeing") if n_by_maker.get(m, 0) >= MIN_MANUFACTURER_PHOTOS]
    balanced = float(np.mean([recall[m] for m in counted])) if counted else None
    sel = metrics.get("manufacturer_selective") or {}
    return {"n": metrics.get("n"), "n_by_manufacturer": n_by_maker, "manufacturers_counted": counted,
            "manufacturer_balanced": balanced, "recall": recall, "family": metrics.get("family_accuracy"),
            "type_top1": metrics.get("type_top1"), "type_top1_frequent": metrics.get("type_top1_frequent"),
            "aurc": sel.get("aurc"), "accuracy_at_80": sel.get("accuracy_at_80"),
            "sure_coverage": sel.get("sure_coverage"), "sure_accuracy": sel.get("sure_accuracy"),
            "ece": metrics.get("ece")}


#: The figures averaged over the held-out origins (``mean``): accuracy, then the confidence
#: figures (:func:`model.metrics.selective_figures`, ECE).
MEAN_KEYS = ("manufacturer_balanced", "family", "type_top1", "aurc", "accuracy_at_80", "sure_coverage",
             "sure_accuracy", "ece")


#: Held-out photos scored per origin at most (a seeded sample, stratified by manufacturer and
#: family, beyond it): davidnh8's 3,734 photos would otherwise take most of a fold's time on 2 cores.
MAX_TEST_PER_ORIGIN = 900


def _sample(df, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(rows) <= n:
        return rows
    sub = df.iloc[rows]
    keys = (sub["manufacturer"] + "/" + sub["family"]).to_numpy()
    rng = np.random.default_rng(seed)
    picked = []
    for k in np.unique(keys):
        idx = rows[keys == k]
        take = max(1, int(round(n * len(idx) / len(rows))))
        picked.append(rng.choice(idx, min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def eval_sources(cfg, origins: list[str] | None = None, out: str | Path = "reports/sources.json",
                 label: str | None = None, max_test: int = MAX_TEST_PER_ORIGIN) -> dict:
    """Run the leave-one-origin-out folds for one training configuration.

    Args:
        cfg: :class:`model.training.config.TrainConfig` (its data must hold photos from >= 2 origins).
        origins: the origins to hold out (default: every photo origin).
        out: JSON report; a run with the same ``label`` replaces its entry, others are kept, so
            several configurations accumulate in one file (and ``reports/sources.md``).
        label: the configuration's name in the report (default: the flags that differ from the
            defaults).
        max_test: Airbus/Boeing photos of a held-out origin scored at most (a seeded sample
            stratified by manufacturer and family; :data:`MAX_TEST_PER_ORIGIN`).
    Returns:
        ``{"label", "config", "folds": {origin: figures}, "mean": {...}, "own_split": ...}``; the
        run is tracked in MLflow's experiment ``eval-sources`` under ``label``
        (:mod:`model.training.tracking`).
    Raises:
        ValueError: fewer than two photo origins.
    """
    defaults = TrainConfig()
    cfg_dict = {k: v for k, v in cfg.__dict__.items() if k != "extra"}
    label = label or (" ".join(f"{k}={v}" for k, v in cfg_dict.items()
                               if k not in ("data", "models_dir", "reports_dir", "verbose", "version")
                               and v != getattr(defaults, k)) or "defaults")
    with tracking.start(tracking.SOURCES_EXPERIMENT, label, cfg,
                        extra_params={"origins": json.dumps(origins), "max_test": max_test}) as run:
        entry = _eval_sources(cfg, origins, Path(out), label, max_test)
        run.log_metrics(tracking.flatten_metrics({**entry["folds"], "mean": entry["mean"],
                                                  "seconds": entry["seconds"],
                                                  "total_seconds": entry["total_seconds"]}))
        run.log_artifact(Path(out))
        run.log_artifact(Path(out).with_suffix(".md"))
        run.log_new_figures(Path(cfg.reports_dir) / "figures")
    return entry


def _eval_sources(cfg, origins: list[str] | None, out: Path, label: str, max_test: int) -> dict:
    """:func:`eval_sources`'s work, without the tracking: the report entry (also written to ``out``)."""
    t0 = time.time()
    prep: Prepared = prepare(cfg)
    df = prep.df
    photo = (df["domain"] == "photo").to_numpy()
    origin = np.where(photo, df["source"].map(origin_of).to_numpy(), "")
    all_origins = sorted(set(origin[photo]))
    origins = origins or all_origins
    if len(all_origins) < 2:
        raise ValueError(f"leave-one-source-out needs photos from two origins, found {all_origins}")
    split = df["split"].to_numpy()
    folds, seconds, rows = {}, {}, []
    for o in origins:
        t = time.time()
        held = origin == o
        sel = {s: np.flatnonzero((split == s) & ~held) for s in ("train", "validation")}
        sel["test"] = np.flatnonzero(held)
        cascade, *_ = fit_cascade(cfg, prep, sel, f"loso-{o}")
        test = sel["test"][df["manufacturer"].iloc[sel["test"]].isin(["Airbus", "Boeing"]).to_numpy()]
        n_held = len(test)
        test = _sample(df, test, max_test, cfg.seed)
        m = mev.evaluate(cascade, df.iloc[test].reset_index(drop=True), prep.pixels[test],
                         boxes=aircraft_boxes(prep, test),
                         aircraft=None if prep.aircraft is None else prep.aircraft[test])
        fold_rows = prediction_rows(cascade, df.iloc[test].reset_index(drop=True), prep.pixels[test], o,
                                    aircraft_boxes(prep, test), None if prep.aircraft is None else prep.aircraft[test])
        t_sig = time.time()
        for r, extra in zip(fold_rows, fold_signals(cascade, prep, sel, test, cfg.seed)):
            r.update(extra)
        log(f"held out {o}: novelty and views in {time.time() - t_sig:.0f}s")
        rows += fold_rows
        n_by = df.iloc[test]["manufacturer"].value_counts().to_dict()
        folds[o] = _figures(m, {k: int(v) for k, v in n_by.items()})
        folds[o]["n_held_out"] = int(n_held)
        seconds[o] = round(time.time() - t, 1)
        log(f"held out {o}: {json.dumps({k: folds[o][k] for k in ('n', 'manufacturer_balanced', 'family', 'type_top1')})}"
             f" ({seconds[o]}s)")
    mean = {k: (float(np.mean([f[k] for f in folds.values() if f[k] is not None]))
                if any(f[k] is not None for f in folds.values()) else None)
            for k in MEAN_KEYS}
    cfg_dict = {k: v for k, v in cfg.__dict__.items() if k != "extra"}
    entry = {"label": label, "config": cfg_dict, "origins": all_origins, "folds": folds, "mean": mean,
             "seconds": seconds, "total_seconds": round(time.time() - t0, 1)}
    report = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    report["runs"] = [r for r in report.get("runs", []) if r.get("label") != label] + [entry]
    mio.write_json(out, report)
    mio.write_text(out.with_suffix(".md"), markdown_table(report))
    preds_csv = out.parent / "sources_predictions" / f"{label}.csv"
    preds_csv.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["origin"]  # a fold may lack a class
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    mio.write_text(preds_csv, buf.getvalue())
    log(f"mean over held-out origins: {json.dumps(mean)}; {out}")
    return entry


def prediction_rows(cascade, df, pixels: np.ndarray, origin: str, boxes, aircraft, batch_size: int = 64) -> list[dict]:
    """One row per photo of a held-out origin: ``origin``, ``image_path``, the labels
    (``manufacturer``, ``family``, ``icao_type``), stage 1's probability of each manufacturer
    (``p_<manufacturer>``, with the version's TTA), the answer (``answer_level``,
    ``answer_label``, ``answer_manufacturer``, ``answer_family``, ``answer_type``, ``unsure``) and
    the two leading joint probabilities (``top1_joint``, ``top2_joint``; the gap says whether two
    types are close). Probabilities are floats in [0, 1]."""
    pipeline = Pipeline(cascade)
    out = []
    for s in range(0, len(df), batch_size):
        idx = range(s, min(s + batch_size, len(df)))
        batch = [pipeline.from_pixels(pixels[i], None if boxes is None else boxes[i],
                                      None if aircraft is None else float(aircraft[i])) for i in idx]
        p_m, _ = cascade.probabilities(np.stack([b.x for b in batch]))
        for i, ans, p in zip(idx, pipeline.forward(batch, top_k=2), p_m):
            r = df.iloc[i]
            tops = [t["probability"] for t in ans["top_k"]] + [0.0, 0.0]
            out.append({"origin": origin, "image_path": r.get("image_path", ""), "manufacturer": r["manufacturer"],
                        "family": r.get("family", ""), "icao_type": r.get("icao_type", ""),
                        **{f"p_{m}": round(float(v), 6) for m, v in zip(cascade.manufacturers, p)},
                        "answer_level": ans["answer"]["level"], "answer_label": ans["answer"]["label"],
                        "answer_manufacturer": ans["manufacturer"]["label"] or "",
                        "answer_family": ans["family"]["label"] or "", "answer_type": ans["type"]["label"] or "",
                        "unsure": ans["unsure"], "top1_joint": round(tops[0], 6), "top2_joint": round(tops[1], 6)})
    return out


#: The neighbours whose distance :func:`fold_signals` reports (``knn_<k>``).
KNN_KS = (1, 5, 10, 50)

#: Quantiles (percent) of the validation photos' distances :func:`fold_signals` reports.
VAL_QUANTILES = (50, 80, 90, 95, 98, 99)


def _scaled_batches(pixels: np.ndarray, rows: np.ndarray, spec, batch_size: int = 64):
    for s in range(0, len(rows), batch_size):
        yield pp.scale(pixels[rows[s:s + batch_size]], spec)


def fold_signals(cascade, prep: Prepared, sel: dict, test_rows: np.ndarray, seed: int = 0,
                 max_bank: int = MAX_BANK) -> list[dict]:
    """The confidence signals of a fold's held-out photos (:mod:`model.confidence`), one dict per
    row of ``test_rows`` in order:

    - ``knn_<k>`` for :data:`KNN_KS`: the k-NN distance (in [0, 2]) of the photo's penultimate
      stage-1 features to the fold's training photos' (the bank, as a version's:
      :func:`model.training.novelty.bank_rows`, at most ``max_bank`` of ``sel["train"]``'s photos);
    - ``val_q<q>_knn_<k>``: the fold's own scale for it, the quantile ``q`` (:data:`VAL_QUANTILES`,
      percent) of the same distance over the fold's validation photos (``sel["validation"]``),
      which a version can compute at training time too;
    - ``pf_<manufacturer>`` / ``pz_<manufacturer>``: stage 1's probabilities on the mirror image
      and on the zoomed centre crop (:func:`model.confidence.zoom`), in [0, 1].

    A stage 1 without penultimate features to take (compact, VGG16), or a fold without training
    or validation rows for the bank, gives empty dicts."""
    try:
        fm = conf.feature_model(cascade.stage1)
        tr, val = bank_rows(prep.df, sel, 1, seed, max_bank)
    except ValueError:
        return [{} for _ in test_rows]
    bank = conf.unit(photo_features(cascade, prep.pixels, tr, fm=fm))
    ks = tuple(min(k, len(bank)) for k in KNN_KS)  # tiny folds
    d_val = conf.knn_distance(photo_features(cascade, prep.pixels, val, fm=fm), bank, ks)
    scale = {f"val_q{q}_knn_{k}": round(float(np.quantile(d_val[:, j], q / 100)), 5)
             for j, k in enumerate(KNN_KS) for q in VAL_QUANTILES}
    out = []
    for x in _scaled_batches(prep.pixels, test_rows, cascade.spec):
        _, f = fm.predict_on_batch(x)
        pf, _ = fm.predict_on_batch(np.ascontiguousarray(x[:, :, ::-1]))
        pz, _ = fm.predict_on_batch(conf.zoom(x))
        d = conf.knn_distance(np.asarray(f), bank, ks)
        for i in range(len(x)):
            out.append({**{f"knn_{k}": round(float(d[i, j]), 5) for j, k in enumerate(KNN_KS)}, **scale,
                        **{f"pf_{m}": round(float(v), 6) for m, v in zip(cascade.manufacturers, np.asarray(pf)[i])},
                        **{f"pz_{m}": round(float(v), 6) for m, v in zip(cascade.manufacturers, np.asarray(pz)[i])}})
    return out


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


#: The two tables of :func:`markdown_table`: per origin, the figures ``(key, header)`` joined by
#: " / "; then the mean columns ``(key, header)``, the first in bold.
TABLES = (
    ((("manufacturer_balanced", "balanced"), ("family", "family"), ("type_top1", "type")),
     (("manufacturer_balanced", "mean balanced"), ("family", "mean family"), ("type_top1", "mean type"))),
    ((("sure_accuracy", "sure accuracy"), ("sure_coverage", "sure share"), ("aurc", "AURC")),
     (("sure_accuracy", "mean sure accuracy"), ("sure_coverage", "mean sure share"), ("aurc", "mean AURC"),
      ("accuracy_at_80", "mean accuracy at 80 %"), ("ece", "mean ECE"))),
)


def markdown_table(report: dict) -> str:
    """Two tables over the configurations in ``report["runs"]`` (:data:`TABLES`): each held-out
    origin's balanced manufacturer accuracy / family / type top-1 with their means; then each
    origin's confidence figures (accuracy of the answers given without "unsure" / the share of
    such answers / AURC) with the means of those, accuracy at 80 % coverage and ECE."""
    runs = report.get("runs", [])
    origins = sorted({o for r in runs for o in r["folds"]})
    lines: list[str] = []
    for per_origin, means in TABLES:
        names = " / ".join(h for _, h in per_origin)
        heads = [f"{o}: {names}" for o in origins] + [f"**{means[0][1]}**"] + [h for _, h in means[1:]]
        lines += ["" if lines else None, "| configuration | " + " | ".join(heads) + " |",
                  "|" + "---|" * (len(heads) + 1)]
        for r in runs:
            cells = ["–" if r["folds"].get(o) is None else
                     " / ".join(_fmt(r["folds"][o].get(k)) for k, _ in per_origin) for o in origins]
            m = r["mean"]
            cells += [f"**{_fmt(m.get(means[0][0]))}**"] + [_fmt(m.get(k)) for k, _ in means[1:]]
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(line for line in lines if line is not None) + "\n"
