"""Find probably-mislabelled rows of a dataset (``make clean-suspects``).

Scores every row of a labelled CSV with the current model and lists the rows whose label
disagrees with a confident prediction (manufacturer, or ICAO type within the right manufacturer),
in a Markdown report with thumbnails, for a person to review. Nothing is changed or deleted.
(Idea from the "smart scraper" that filtered Flickr results by classifier confidence.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from . import data as mdata
from . import preprocessing as pp
from .cascade import Cascade
from .io import ModelLoadError


def find_suspects(cascade: Cascade, df, threshold: float = 0.9, batch_size: int = 32) -> list[dict]:
    """Rows whose label disagrees with a prediction of probability >= ``threshold``.

    Args:
        df: dataset rows (``read_metadata`` output); threshold: confidence in [0, 1].
    Returns:
        One dict per suspect: row index, image path, labels, prediction, probability, ``kind``
        (``manufacturer`` or ``type``), sorted by probability, most confident first.
    """
    out = []
    for s in range(0, len(df), batch_size):
        chunk = df.iloc[s:s + batch_size]
        arrays, keep = [], []
        for i, path in zip(chunk.index, chunk["abs_path"]):
            try:
                arrays.append(pp.to_array(path, cascade.spec))
                keep.append(i)
            except (pp.ImageDecodeError, OSError):
                continue
        if not arrays:
            continue
        for i, res in zip(keep, cascade.predict(np.stack(arrays), top_k=1)):
            row = df.loc[i]
            m, pm = res["manufacturer"]["label"], res["manufacturer"]["probability"]
            base = {"row": int(i), "image_path": row["image_path"], "abs_path": row["abs_path"],
                    "label_manufacturer": row["manufacturer"], "label_type": row["icao_type"]}
            if m != row["manufacturer"] and pm >= threshold and row["manufacturer"] in cascade.manufacturers:
                out.append({**base, "kind": "manufacturer", "predicted": m, "probability": pm})
            elif (m == row["manufacturer"] and row["icao_type"] and res["type"]["label"]
                  and res["type"]["label"] != row["icao_type"] and res["type"]["probability"] >= threshold
                  and row["icao_type"] in cascade.labels["types"].get(m, [])):
                out.append({**base, "kind": "type", "predicted": res["type"]["label"],
                            "probability": res["type"]["probability"]})
    return sorted(out, key=lambda r: -r["probability"])


def write_report(suspects: list[dict], out: Path, n_rows: int, threshold: float, version: str,
                 thumb_size: int = 160) -> Path:
    """Markdown report with one thumbnail per suspect (JPEGs under ``<out stem>_thumbs/``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    thumbs = out.parent / f"{out.stem}_thumbs"
    thumbs.mkdir(exist_ok=True)
    lines = [f"# Suspect labels ({len(suspects)} of {n_rows} rows)", "",
             f"Model {version}; a row is listed when the model disagrees with its label with probability "
             f">= {threshold}. Review by eye; nothing was changed.", "",
             "| # | thumbnail | image | label | predicted | p | kind |", "|---|---|---|---|---|---|---|"]
    for k, s in enumerate(suspects, 1):
        thumb = thumbs / f"{k:04d}.jpg"
        try:
            img = pp.decode_image(s["abs_path"])
            img.thumbnail((thumb_size, thumb_size))
            img.save(thumb, quality=85)
            cell = f"![]({thumb.relative_to(out.parent).as_posix()})"
        except (pp.ImageDecodeError, OSError):
            cell = "(unreadable)"
        label = f"{s['label_manufacturer']} {s['label_type']}".strip()
        lines.append(f"| {k} | {cell} | `{s['image_path']}` | {label} | {s['predicted']} | "
                     f"{s['probability']:.3f} | {s['kind']} |")
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.suspects", description=__doc__)
    p.add_argument("--data", required=True, help="dataset folder or metadata.csv")
    p.add_argument("--model-dir", default=os.environ.get("PLANESPOTTER_MODEL_DIR", "models/latest"))
    p.add_argument("--threshold", type=float, default=0.9, help="confidence needed to flag a row")
    p.add_argument("--split", default="", help="only this split (default: all rows)")
    p.add_argument("--out", default="reports/suspects.md")
    args = p.parse_args(argv)
    try:
        cascade = Cascade.load(args.model_dir)
        df = mdata.read_metadata(args.data)
    except (ModelLoadError, mdata.DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.split:
        df = df[df["split"] == args.split]
    suspects = find_suspects(cascade, df, args.threshold)
    path = write_report(suspects, Path(args.out), len(df), args.threshold, cascade.version)
    print(f"{len(suspects)} suspect rows of {len(df)} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
