"""How well the registration reader works: ``make eval-registration`` →
``reports/registration.json`` and ``reports/registration.md``.

On labelled photos (a metadata CSV of ``make ingest-real``: ``image_path``, ``family``,
``icao_type``, ``registration``, ``split``, ``crop_box``), per group of photos:

- **read rate**: the share of photos whose answer carries a registration the registry knows;
- **precision**: of those readings, the share whose registry family equals the labelled family
  (and, where the photo has a labelled ICAO type, whose registry type equals it); the same for
  the readings the answer *uses* (``answer.source == "registration"``, :func:`model.reader.fuse`);
- **type top-1** with and without the reader: the answer's ICAO type equals the labelled one
  (photos with a labelled type; an answer that stops at the family counts as wrong);
- for photos with a labelled registration, the share read exactly;
- seconds per photo of :meth:`model.pipeline.Pipeline.read` (decode + OCR + lookup), one
  onnxruntime thread.

``--throughput`` also times ``make score``'s path (:func:`model.score.score_folder`) with and
without reading, on photos re-encoded at 1,000 and 4,000 px wide in a temporary folder (deleted
afterwards; the shared photos are never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dataset.decode import crop, decode_image
from dataset.metadata import write_text_atomic as atomic_write_text

from .pipeline import Pipeline
from .registry import load_configured
from .score import score_folder

#: Photo groups: name → (source folder substring, splits, minimum width in pixels).
GROUPS = {
    "FGVC photos >= 800 px, test split": (("tritinvo18", "arkhesiae"), ("test",), 800),
    "FGVC photos >= 800 px, all splits": (("tritinvo18", "arkhesiae"), ("train", "validation", "test"), 800),
    "davidnh8 thumbnails, test split": (("davidnh8",), ("test",), 0),
}


def _image(row) -> Image.Image:
    img = decode_image(row.image_path)
    return crop(img, row.crop_box) if row.crop_box else img


def evaluate_group(pipeline: Pipeline, rows: pd.DataFrame, batch_size: int = 16) -> dict:
    """The figures of one group of labelled photos (see the module docstring).

    Args:
        pipeline: a pipeline with a registry (:attr:`~model.pipeline.Pipeline.reads`).
        rows: metadata rows (``image_path`` readable from the working directory).
    Returns:
        ``{"photos", "read", "read_rate", "precision_family", "precision_type", "used",
        "used_precision_family", "used_precision_type", "typed_photos", "type_top1_without",
        "type_top1_with", "type_top1_gain", "registrations_labelled", "registration_exact",
        "read_seconds_mean", "read_seconds_p90", "median_width"}`` (rates in [0, 1]; ``None``
        where nothing was counted).
    """
    out = {"reads": [], "src": [], "fam_ok": [], "type_ok": [], "with": [], "without": [], "exact": [],
           "secs": []}
    for start in range(0, len(rows), batch_size):
        chunk = rows.iloc[start:start + batch_size]
        batch = [pipeline.prepare(_image(r), read=True) for r in chunk.itertuples()]
        for b in batch:
            t = time.perf_counter()
            pipeline.read(b)
            out["secs"].append(time.perf_counter() - t)
        fused = pipeline.forward(batch, top_k=1)
        for b in batch:
            b.reading = None
        plain = pipeline.forward(batch, top_k=1)
        for r, f, p in zip(chunk.itertuples(), fused, plain):
            reg = f["registration"]
            out["reads"].append(reg is not None)
            out["src"].append(f["answer"]["source"] == "registration")
            fam = (pipeline.registry.get(reg["text"]).family or "Other") if reg else None
            out["fam_ok"].append(None if reg is None else fam == r.family)
            out["type_ok"].append(None if reg is None or not r.icao_type else reg["icao_type"] == r.icao_type)
            if r.icao_type:
                out["with"].append(f["type"]["label"] == r.icao_type)
                out["without"].append(p["type"]["label"] == r.icao_type)
            if r.registration:
                out["exact"].append(reg is not None and reg["text"].replace("-", "") == r.registration.upper().replace("-", ""))
    return _summary(out, rows)


def _rate(flags) -> float | None:
    flags = [f for f in flags if f is not None]
    return round(float(np.mean(flags)), 4) if flags else None


def _summary(out: dict, rows: pd.DataFrame) -> dict:
    reads, used = np.asarray(out["reads"]), np.asarray(out["src"])
    fam, typ = out["fam_ok"], out["type_ok"]
    with_, without = _rate(out["with"]), _rate(out["without"])
    secs = np.asarray(out["secs"])
    return {
        "photos": len(rows), "read": int(reads.sum()), "read_rate": _rate(list(reads)),
        "precision_family": _rate(fam), "precision_type": _rate(typ),
        "used": int(used.sum()),
        "used_precision_family": _rate([f for f, u in zip(fam, used) if u]),
        "used_precision_type": _rate([t for t, u in zip(typ, used) if u]),
        "typed_photos": len(out["with"]), "type_top1_without": without, "type_top1_with": with_,
        "type_top1_gain": None if with_ is None else round(with_ - without, 4),
        "registrations_labelled": len(out["exact"]), "registration_exact": _rate(out["exact"]),
        "read_seconds_mean": round(float(secs.mean()), 3) if len(secs) else None,
        "read_seconds_p90": round(float(np.percentile(secs, 90)), 3) if len(secs) else None,
        "median_width": int(pd.to_numeric(rows["width"], errors="coerce").median()) if len(rows) else None,
    }


def throughput(pipeline: Pipeline, rows: pd.DataFrame, widths=(1000, 4000), n: int = 24) -> dict:
    """Images/s of :func:`model.score.score_folder` with and without reading, on ``n`` photos
    re-encoded (JPEG quality 90) at each width in a temporary folder outside the repository,
    after one untimed pass (warm-up)."""
    res = {}
    picked = rows.head(n)
    for w in widths:
        tmp = Path(tempfile.mkdtemp(prefix=f"reg-bench-{w}-"))
        try:
            for i, r in enumerate(picked.itertuples()):
                img = _image(r)
                img.resize((w, round(img.height * w / img.width)), Image.LANCZOS).save(tmp / f"{i:03d}.jpg", quality=90)
            if w == widths[0]:  # warm-up, untimed: the first forward passes and the OCR's sessions
                score_folder(pipeline, tmp, tmp / "warm-up.csv", batch_size=8, progress=False, read=True)
            for read in (False, True):
                csv = tmp / f"out-{read}.csv"
                t = time.perf_counter()
                score_folder(pipeline, tmp, csv, batch_size=8, progress=False, read=read)
                res[f"{w}px_{'with' if read else 'without'}_reading_images_per_s"] = round(len(picked) / (time.perf_counter() - t), 2)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def markdown(report: dict) -> str:
    """The report as Markdown tables (one row per group; throughput below)."""
    cols = ["photos", "read_rate", "precision_family", "used", "used_precision_family", "used_precision_type",
            "type_top1_without", "type_top1_with", "type_top1_gain", "registration_exact", "read_seconds_mean",
            "median_width"]
    lines = [f"# Registration reader (model {report['model_version']}, registry {report['registry_entries']} entries)",
             "", f"Command: `{report['command']}`; {report['machine']}", "",
             "| photos | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, g in report["groups"].items():
        lines.append(f"| {name} | " + " | ".join("" if g[c] is None else str(g[c]) for c in cols) + " |")
    if report.get("throughput"):
        lines += ["", "| make score path | images/s |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in report["throughput"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.registration_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default="models/latest")
    ap.add_argument("--metadata", default="data/raw/real-airliners/metadata.csv")
    ap.add_argument("--out", default="reports/registration.json")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos per group (0: all)")
    ap.add_argument("--throughput", action="store_true", help="also time make score with and without reading")
    args = ap.parse_args(argv)
    registry = load_configured()
    if registry is None:
        print("error: no registry (set PLANESPOTTER_REGISTRY)", file=sys.stderr)
        return 2
    meta = Path(args.metadata)
    if not meta.is_file():
        print(f"error: {meta} does not exist (make ingest-real writes it)", file=sys.stderr)
        return 2
    pipeline = Pipeline.load(args.model_dir, registry=registry)
    rows = pd.read_csv(meta, dtype=str, keep_default_na=False)
    rows["image_path"] = [str((meta.parent / p).resolve()) if not os.path.isabs(p) else p for p in rows.image_path]
    rows["width"] = pd.to_numeric(rows["width"], errors="coerce")
    report = {"model_version": pipeline.version, "registry": str(registry.path), "registry_entries": registry.size,
              "command": "make eval-registration", "machine": f"{os.cpu_count()} CPU cores", "groups": {}}
    for name, (sources, splits, min_w) in GROUPS.items():
        sel = rows[rows.image_path.str.contains("|".join(sources)) & rows.split.isin(splits) & (rows.width >= min_w)]
        if args.limit:
            sel = sel.head(args.limit)
        t = time.perf_counter()
        report["groups"][name] = evaluate_group(pipeline, sel)
        print(f"{name}: {json.dumps(report['groups'][name])} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    if args.throughput:
        fgvc = rows[rows.image_path.str.contains("tritinvo18") & rows.split.eq("test")]
        report["throughput"] = throughput(pipeline, fgvc)
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
