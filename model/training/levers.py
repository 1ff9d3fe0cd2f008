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


def markdown(report: dict) -> str:
    rows = [(o, f) for o, f in report["origins"].items() if o != "all"]
    lines = [f"# Threshold chosen on held-out origins (target {report['target']}, run `{report['label']}`)", "",
             "| held-out origin | photos | served: sure share / accuracy | threshold (other origins) | "
             "sure share / accuracy | Airbus/Boeing → Other |", "|---|---|---|---|---|---|"]
    for o, f in rows:
        lines.append(f"| {o} | {f['n']} | {f['served_sure_share']} / {f['served_sure_accuracy']} | {f['threshold']} | "
                     f"{f['sure_share']} / {f['sure_accuracy']} | {f['airbus_boeing_to_other']} |")
    mean = {k: float(np.mean([f[k] for _, f in rows if f[k] is not None]))
            for k in ("served_sure_share", "served_sure_accuracy", "sure_share", "sure_accuracy")}
    lines.append(f"| mean | | {mean['served_sure_share']:.4f} / {mean['served_sure_accuracy']:.4f} | | "
                 f"{mean['sure_share']:.4f} / {mean['sure_accuracy']:.4f} | |")
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
    report = {"label": args.label, "target": args.target, "origins": held_out_thresholds(_frame(path), args.target)}
    out = Path(args.reports_dir) / "levers.json"
    mio.write_json(out, report)
    mio.write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
