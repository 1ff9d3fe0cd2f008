"""Exploratory data analysis of a dataset's metadata CSV → a Markdown report with figures.

The R original's second chapter (photos per manufacturer, per type, per airline, missing
values), plus near-duplicates and unmapped type strings. Works for any CSV with the
shared schema (:data:`dataset.schema.COLUMNS`), scraped or rendered by ``synth``.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

from dataset.metadata import read_rows, write_bytes_atomic, write_text_atomic
from dataset.schema import COLUMNS

TOP_N = 30


def _bar_png(counts: list[tuple[str, int]], title: str, xlabel: str) -> bytes:
    """A horizontal bar chart (PNG bytes) of ``counts`` (label, n), largest on top."""
    import matplotlib  # deferred: matplotlib start-up (~0.8 s), only for the figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: likewise, after choosing the Agg backend

    labels = [c[0] or "(empty)" for c in counts][::-1]
    values = [c[1] for c in counts][::-1]
    fig, ax = plt.subplots(figsize=(7, max(1.6, 0.28 * len(labels) + 0.9)))
    ax.barh(range(len(labels)), values, color="#3b6ea5")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v}", va="center", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    def esc(x) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def summarise(rows: list[dict[str, str]]) -> dict:
    """Counts behind the report (plain dicts/lists, JSON-able).

    Keys: ``n``, ``per_manufacturer``/``per_icao_type``/``per_airline``/``per_source``/
    ``per_split`` (lists of (value, n), most common first), ``missing`` (column → number
    of empty cells), ``near_duplicates`` (list of (image_path, near_duplicate_of)),
    ``exact_duplicate_groups`` (sha256 values stored more than once → n), ``unmapped``
    (type_raw → n for rows without ``icao_type``), ``width``/``height`` (min, median, max)
    or ``None``.
    """
    n = len(rows)

    def count(col: str) -> list[tuple[str, int]]:
        return Counter(r.get(col, "") for r in rows).most_common()

    def stats(col: str):
        vals = sorted(int(r[col]) for r in rows if (r.get(col) or "").isdigit())
        return (vals[0], vals[len(vals) // 2], vals[-1]) if vals else None

    sha_counts = Counter(r["sha256"] for r in rows if r.get("sha256"))
    return {
        "n": n,
        "per_manufacturer": count("manufacturer"),
        "per_icao_type": count("icao_type"),
        "per_sub_model": count("sub_model"),
        "per_airline": count("airline"),
        "per_source": count("source"),
        "per_split": count("split"),
        "missing": {c: sum(1 for r in rows if not (r.get(c) or "").strip()) for c in COLUMNS},
        "near_duplicates": [(r["image_path"], r["near_duplicate_of"]) for r in rows if r.get("near_duplicate_of")],
        "exact_duplicate_groups": {s: k for s, k in sha_counts.items() if k > 1},
        "unmapped": Counter(r.get("type_raw", "") for r in rows if not r.get("icao_type")).most_common(),
        "width": stats("width"),
        "height": stats("height"),
    }


def write_report(csv_path: str | os.PathLike[str], out_md: str | os.PathLike[str]) -> dict:
    """Write the EDA report for ``csv_path`` to ``out_md`` and its figures to
    ``<out_md stem>_figures/`` (PNG). Returns :func:`summarise`'s dict.

    Raises ``FileNotFoundError`` when the CSV does not exist and
    :class:`dataset.metadata.SchemaError` when it lacks schema columns.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"no such CSV: {csv_path}")
    rows = read_rows(csv_path)
    s = summarise(rows)
    out_md = Path(out_md)
    fig_dir = out_md.parent / f"{out_md.stem}_figures"
    rel = fig_dir.name

    def fig(name: str, counts, title: str, xlabel: str = "photos") -> str:
        if not counts:
            return "_(no data)_"
        write_bytes_atomic(fig_dir / name, _bar_png(counts, title, xlabel))
        return f"![{title}]({rel}/{name})"

    n = s["n"]
    pct = (lambda k: f"{100.0 * k / n:.1f} %") if n else (lambda k: "-")
    md = [f"# EDA: `{csv_path}`", "",
          f"{n} photos; sources: " + (", ".join(f"{v or '(empty)'} {k}" for v, k in s["per_source"]) or "none") + ".",
          ""]
    if s["width"]:
        md += [f"Image width min/median/max: {s['width'][0]} / {s['width'][1]} / {s['width'][2]} px; "
               f"height {s['height'][0]} / {s['height'][1]} / {s['height'][2]} px.", ""]
    md += ["## Photos per manufacturer", "", _table([(v or "(empty)", k, pct(k)) for v, k in s["per_manufacturer"]],
                                                   ("manufacturer", "photos", "share")), "",
           fig("manufacturer.png", s["per_manufacturer"], "Photos per manufacturer"), ""]
    md += ["## Photos per aircraft type (ICAO designator)", "",
           _table([(v or "(unmapped)", k, pct(k)) for v, k in s["per_icao_type"][:TOP_N]], ("icao_type", "photos", "share")),
           "", fig("icao_type.png", [(v or "(unmapped)", k) for v, k in s["per_icao_type"][:TOP_N]],
                   f"Photos per ICAO type (top {TOP_N})"), ""]
    md += ["## Photos per sub-model", "",
           _table([(v or "(empty)", k) for v, k in s["per_sub_model"][:TOP_N]], ("sub_model", "photos")), ""]
    md += ["## Photos per airline", "",
           _table([(v or "(empty)", k) for v, k in s["per_airline"][:TOP_N]], ("airline", "photos")), "",
           fig("airline.png", s["per_airline"][:TOP_N], f"Photos per airline (top {TOP_N})"), ""]
    missing = [(c, k) for c, k in s["missing"].items()]
    md += ["## Missing values per column", "", "Empty cells per column (empty = not known or not applicable).", "",
           _table([(c, k, pct(k)) for c, k in missing], ("column", "empty", "share")), "",
           fig("missing.png", sorted(missing, key=lambda x: -x[1]), "Empty cells per column", "empty cells"), ""]
    nd = s["near_duplicates"]
    md += ["## Near-duplicates", "",
           f"{len(nd)} photos are flagged as near-duplicates of an earlier photo (perceptual hash); "
           f"{len(s['exact_duplicate_groups'])} image contents (sha256) occur more than once.", ""]
    if nd:
        md += [_table(nd[:TOP_N], ("image_path", "near_duplicate_of")), ""]
    md += ["## Unmapped aircraft types", "",
           "Type strings without an ICAO designator (kept in the data, label empty)." if s["unmapped"] else "None.", ""]
    if s["unmapped"]:
        md += [_table([(v or "(empty)", k) for v, k in s["unmapped"][:TOP_N]], ("type_raw", "photos")), ""]
    if any(v for v, _ in s["per_split"]):
        md += ["## Splits", "", _table([(v or "(unassigned)", k) for v, k in s["per_split"]], ("split", "photos")), ""]
    write_text_atomic(out_md, "\n".join(md))
    return s
