"""Confidence levers that need no retraining, measured on the leave-one-source-out answers that
``make eval-sources`` writes (``reports/sources_predictions/<label>.csv``,
:func:`model.training.sources.prediction_rows`).

The lever measured here: **the routing threshold chosen on held-out origins**. For each origin,
the threshold is the lowest on a grid whose "sure" answers (stage 1's top probability at or above
it) are right at least ``target`` of the time on the *other* origins' held-out photos, every one
of them; it is then applied to the origin itself, which took no part in choosing it. Reported per
origin: the share of photos answered without "unsure" and their manufacturer accuracy, at the
served threshold (the ``unsure`` column) and at the chosen one; Airbus/Boeing photos answered
``Other``.

The second lever: **a rule of several signals** (:mod:`model.confidence`), chosen the same way.
An answer is sure when stage 1's top probability reaches the threshold, the photo is not novel
(its k-NN feature distance below the fold's ``q``-th percentile of its validation photos'
distances: ``knn_<k>`` against ``val_q<q>_knn_<k>``) and the views agree (stage 1's top
manufacturer on the mirror image, ``pf_*``, and/or the zoomed crop, ``pz_*``, equals the
image's). Per held-out origin the rule is the one whose sure answers are right >= ``target`` on
every other origin with the largest mean sure share there (:func:`choose_rule`). Also reported:
each signal alone at the served threshold (:func:`fixed_rules`), the accuracy of the averaged views,
and temperatures fitted on the other origins (ECE before and after, :func:`held_out_temperature`).

``python -m model.training.levers [--label default] [--target 0.95]`` →
``reports/levers.json`` and ``reports/levers.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io as mio
from .. import metrics as mm
from .calibration import fit_temperature

#: Thresholds tried, in [0.5, 0.999].
GRID = np.round(np.concatenate([np.arange(0.5, 0.95, 0.01), np.arange(0.95, 0.9995, 0.001)]), 4)


def _frame(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"origin": str, "manufacturer": str, "answer_manufacturer": str},
                     keep_default_na=False)
    p_cols = [c for c in df.columns if c.startswith("p_")]
    # a fold whose stage 1 lacks a class (fgvc held out takes "Other" with it) leaves its column empty
    df[p_cols] = df[p_cols].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    df["confidence"] = df[p_cols].max(axis=1)
    df["right"] = df["answer_manufacturer"] == df["manufacturer"]
    df["served_sure"] = df["unsure"].astype(str).str.lower() != "true"
    makers = [c[2:] for c in p_cols]
    df["top"] = df[p_cols].to_numpy().argmax(1)
    for view in ("pf", "pz"):
        cols = [f"{view}_{m}" for m in makers]
        if all(c in df for c in cols):
            df[cols] = df[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0)
            df[f"top_{view}"] = df[cols].to_numpy().argmax(1)
    return df


def _sure(df: pd.DataFrame, t: float) -> tuple[float, float | None]:
    """(share of photos with confidence >= t, their accuracy or None)."""
    m = df["confidence"] >= t
    return float(m.mean()) if len(df) else 0.0, (float(df.loc[m, "right"].mean()) if m.any() else None)


def choose_threshold(df: pd.DataFrame, target: float) -> float | None:
    """The lowest :data:`GRID` threshold whose sure answers are right >= ``target`` on every
    origin of ``df`` (origins with no sure answer at it count as met); ``None`` when none is."""
    for t in GRID:
        accs = [_sure(g, t)[1] for _, g in df.groupby("origin")]
        if all(a is None or a >= target for a in accs):
            return float(t)
    return None


def held_out_thresholds(df: pd.DataFrame, target: float = 0.95) -> dict:
    """Per origin: the threshold chosen on the other origins and what it gives there (see the
    module docstring); ``"all"``: the threshold chosen on every origin, for a version to ship."""
    out = {}
    for o, g in df.groupby("origin"):
        t = choose_threshold(df[df["origin"] != o], target)
        share, acc = _sure(g, t) if t is not None else (0.0, None)
        served = g["served_sure"]
        out[o] = {"n": int(len(g)), "served_sure_share": round(float(served.mean()), 4),
                  "served_sure_accuracy": round(float(g.loc[served, "right"].mean()), 4) if served.any() else None,
                  "threshold": t, "sure_share": round(share, 4),
                  "sure_accuracy": None if acc is None else round(acc, 4),
                  "airbus_boeing_to_other": round(float((g["answer_manufacturer"] == "Other").mean()), 4)}
    out["all"] = {"threshold": choose_threshold(df, target)}
    return out


#: Views whose disagreement a rule may use: none, the mirror image, the zoomed crop, or either.
VIEWS = {"none": (), "flip": ("pf",), "zoom": ("pz",), "both": ("pf", "pz")}

#: Thresholds a rule may combine with the other signals (a coarser :data:`GRID`).
RULE_GRID = np.round(np.concatenate([np.arange(0.5, 0.95, 0.05), np.arange(0.95, 0.9995, 0.01), [0.995, 0.999]]), 4)


def _novelty_options(df: pd.DataFrame) -> list[tuple[int, int] | None]:
    """``None`` and every ``(k, q)`` with both ``knn_<k>`` and ``val_q<q>_knn_<k>`` columns."""
    out: list = [None]
    for c in df.columns:
        if c.startswith("val_q") and "_knn_" in c:
            q, k = c[len("val_q"):].split("_knn_")
            if f"knn_{k}" in df:
                out.append((int(k), int(q)))
    return out


def _views_options(df: pd.DataFrame) -> list[str]:
    return [v for v, cols in VIEWS.items() if all(f"top_{c}" in df for c in cols)]


def sure_mask(df: pd.DataFrame, rule: dict) -> np.ndarray:
    """Bool ``(n,)``: the answers ``rule`` leaves sure (``{"threshold", "novelty": (k, q) | None,
    "views": key of VIEWS}``; see the module docstring)."""
    sure = df["confidence"].to_numpy() >= rule["threshold"]
    if rule.get("novelty"):
        k, q = rule["novelty"]
        sure &= df[f"knn_{k}"].to_numpy(float) < df[f"val_q{q}_knn_{k}"].to_numpy(float)
    for view in VIEWS[rule.get("views", "none")]:
        sure &= df[f"top_{view}"].to_numpy() == df["top"].to_numpy()
    return sure


def _rule_figures(g: pd.DataFrame, rule: dict) -> tuple[float, float | None]:
    m = sure_mask(g, rule)
    return float(m.mean()) if len(g) else 0.0, (float(g["right"].to_numpy()[m].mean()) if m.any() else None)


def choose_rule(df: pd.DataFrame, target: float) -> dict | None:
    """Among every threshold (:data:`RULE_GRID`), novelty option and views option, the rule whose
    sure answers are right >= ``target`` on every origin of ``df`` (an origin with no sure answer
    counts as met) with the largest mean sure share over the origins; ties: the simplest (no
    novelty, no views, lowest threshold first). ``None`` when no rule meets the target."""
    groups = [g for _, g in df.groupby("origin")]
    best, best_share = None, -1.0
    for novelty in _novelty_options(df):
        for views in _views_options(df):
            for t in RULE_GRID:
                rule = {"threshold": float(t), "novelty": novelty, "views": views}
                figs = [_rule_figures(g, rule) for g in groups]
                if all(a is None or a >= target for _, a in figs):
                    share = float(np.mean([s for s, _ in figs]))
                    if share > best_share + 1e-12:
                        best, best_share = rule, share
                    break  # higher thresholds only lose share for this novelty/views
    return best


def _balanced(g: pd.DataFrame, top: np.ndarray, makers: list[str]) -> float | None:
    """Mean recall of Airbus and Boeing (each with >= 20 photos) for answers ``top`` (indices into ``makers``)."""
    from .sources import MIN_MANUFACTURER_PHOTOS

    recalls = []
    for m in ("Airbus", "Boeing"):
        rows = (g["manufacturer"] == m).to_numpy()
        if m in makers and rows.sum() >= MIN_MANUFACTURER_PHOTOS:
            recalls.append(float((top[rows] == makers.index(m)).mean()))
    return float(np.mean(recalls)) if recalls else None


def _p(df: pd.DataFrame, prefix: str) -> tuple[np.ndarray, list[str]]:
    cols = [c for c in df.columns if c.startswith("p_")]
    makers = [c[2:] for c in cols]
    return df[[f"{prefix}_{m}" for m in makers]].to_numpy(float), makers


def fixed_rules(df: pd.DataFrame, threshold: float = 0.6) -> dict:
    """Per origin, each signal alone and all together at the served ``threshold``: sure share /
    accuracy; and the balanced accuracy of the image alone and of the averaged views (image,
    mirror, zoom: a test-time ensemble)."""
    rules = {"threshold only": {"threshold": threshold, "novelty": None, "views": "none"}}
    nov = [o for o in _novelty_options(df) if o]
    pick = (10, 95) if (10, 95) in nov else (nov[0] if nov else None)
    if pick:
        rules[f"+ novelty k={pick[0]} q={pick[1]}"] = {"threshold": threshold, "novelty": pick, "views": "none"}
    if "both" in _views_options(df):
        rules["+ views (mirror, zoom)"] = {"threshold": threshold, "novelty": None, "views": "both"}
        if pick:
            rules["+ novelty + views"] = {"threshold": threshold, "novelty": pick, "views": "both"}
    out = {}
    for o, g in df.groupby("origin"):
        p, makers = _p(g, "p")
        out[o] = {name: dict(zip(("sure_share", "sure_accuracy"), _rule_figures(g, r))) for name, r in rules.items()}
        out[o]["balanced_image"] = _balanced(g, p.argmax(1), makers)
        if "both" in _views_options(df):
            avg = (p + _p(g, "pf")[0] + _p(g, "pz")[0]) / 3
            out[o]["balanced_views_averaged"] = _balanced(g, avg.argmax(1), makers)
    return out


def held_out_temperature(df: pd.DataFrame) -> dict:
    """Per origin: a temperature fitted (NLL, :func:`model.training.calibration.fit_temperature`)
    on the other origins' stage-1 probabilities (as logits, ``log p``), and the origin's ECE
    before and after it (:func:`model.metrics.expected_calibration_error`)."""
    p_all, makers = _p(df, "p")
    known = df["manufacturer"].isin(makers).to_numpy()
    y = np.array([makers.index(m) if m in makers else -1 for m in df["manufacturer"]])
    z = np.log(np.clip(p_all, 1e-12, 1.0))
    out = {}
    for o in sorted(df["origin"].unique()):
        here = (df["origin"] == o).to_numpy() & known
        other = (df["origin"] != o).to_numpy() & known
        t = fit_temperature(z[other], y[other])
        out[o] = {"temperature": round(float(t), 4),
                  "ece_before": round(mm.expected_calibration_error(p_all[here], y[here]), 4),
                  "ece_after": round(mm.expected_calibration_error(mm.softmax(z[here], t), y[here]), 4)}
    return out


def held_out_rules(df: pd.DataFrame, target: float = 0.95) -> dict:
    """Per origin: the rule chosen on the other origins (:func:`choose_rule`) and its sure share /
    accuracy on the origin; ``"all"``: the rule chosen on every origin."""
    out = {}
    for o, g in df.groupby("origin"):
        rule = choose_rule(df[df["origin"] != o], target)
        share, acc = _rule_figures(g, rule) if rule else (0.0, None)
        out[o] = {"rule": rule, "sure_share": round(share, 4), "sure_accuracy": None if acc is None else round(acc, 4)}
    out["all"] = {"rule": choose_rule(df, target)}
    return out


def _rule_text(rule: dict | None) -> str:
    if not rule:
        return "none meets the target"
    parts = [f"p >= {rule['threshold']}"]
    if rule.get("novelty"):
        parts.append(f"k-NN({rule['novelty'][0]}) < validation q{rule['novelty'][1]}")
    if rule.get("views") and rule["views"] != "none":
        parts.append(f"views agree ({rule['views']})")
    return ", ".join(parts)


def markdown_rules(report: dict) -> str:
    """The rules, signals and temperature tables of :func:`main`'s report, in Markdown."""
    lines = ["", f"# Rules of several signals chosen on held-out origins (target {report['target']})", "",
             "| held-out origin | rule (chosen on the other origins) | sure share / accuracy |", "|---|---|---|"]
    for o, f in report["rules"].items():
        if o != "all":
            lines.append(f"| {o} | {_rule_text(f['rule'])} | {f['sure_share']} / {f['sure_accuracy']} |")
    lines += ["", f"Rule chosen on all origins: {_rule_text(report['rules']['all']['rule'])}", "",
              "# Each signal at the served threshold", ""]
    fixed = report["fixed"]
    names = [k for k in next(iter(fixed.values())) if not k.startswith("balanced")]
    lines += ["| held-out origin | " + " | ".join(f"{n}: sure share / accuracy" for n in names)
              + " | balanced: image / views averaged |", "|" + "---|" * (len(names) + 2)]
    for o, f in fixed.items():
        cells = [f"{_fmt(f[n]['sure_share'])} / {_fmt(f[n]['sure_accuracy'])}" for n in names]
        lines.append(f"| {o} | " + " | ".join(cells)
                     + f" | {_fmt(f.get('balanced_image'))} / {_fmt(f.get('balanced_views_averaged'))} |")
    lines += ["", "# Temperature fitted on the other origins", "",
              "| held-out origin | temperature | ECE before → after |", "|---|---|---|"]
    for o, f in report["temperature"].items():
        lines.append(f"| {o} | {f['temperature']} | {f['ece_before']} → {f['ece_after']} |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(report: dict) -> str:
    rows = [(o, f) for o, f in report["origins"].items() if o != "all"]
    lines = [f"# Threshold chosen on held-out origins (target {report['target']}, run `{report['label']}`)", "",
             "| held-out origin | photos | served: sure share / accuracy | threshold (other origins) | "
             "sure share / accuracy | Airbus/Boeing → Other |", "|---|---|---|---|---|---|"]
    for o, f in rows:
        lines.append(f"| {o} | {f['n']} | {f['served_sure_share']} / {f['served_sure_accuracy']} | {f['threshold']} | "
                     f"{f['sure_share']} / {f['sure_accuracy']} | {f['airbus_boeing_to_other']} |")
    vals = {k: [f[k] for _, f in rows if f[k] is not None]
            for k in ("served_sure_share", "served_sure_accuracy", "sure_share", "sure_accuracy")}
    mean = {k: f"{np.mean(v):.4f}" if v else "–" for k, v in vals.items()}  # no sure answer anywhere: none
    lines.append(f"| mean | | {mean['served_sure_share']} / {mean['served_sure_accuracy']} | | "
                 f"{mean['sure_share']} / {mean['sure_accuracy']} | |")
    lines += ["", f"Threshold chosen on all origins: {report['origins']['all']['threshold']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.training.levers", description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="default")
    ap.add_argument("--reports-dir", default="reports")
    ap.add_argument("--target", type=float, default=0.95)
    args = ap.parse_args(argv)
    path = Path(args.reports_dir) / "sources_predictions" / f"{args.label}.csv"
    if not path.is_file():
        print(f"error: {path} does not exist (make eval-sources SOURCES_LABEL={args.label} writes it)", file=sys.stderr)
        return 2
    df = _frame(path)
    report = {"label": args.label, "target": args.target, "origins": held_out_thresholds(df, args.target),
              "rules": held_out_rules(df, args.target), "fixed": fixed_rules(df), "temperature": held_out_temperature(df)}
    out = Path(args.reports_dir) / "levers.json"
    mio.write_json(out, report)
    text = markdown(report) + markdown_rules(report)
    mio.write_text(out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
