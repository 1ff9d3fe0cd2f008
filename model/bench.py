"""Batch-scoring benchmark (``make bench-score``): ``make score``'s images/s against the limit.

Three figures in one run, same model, same batch size, same images:

- ``images_per_s``: :func:`model.score.score_folder` end to end (parallel decode, batched
  inference, CSV appends);
- ``limit_images_per_s``: the cascade's forward pass alone on pre-decoded tensors
  (``Cascade.predict`` on float32 batches) — the most this machine can do;
- ``naive_images_per_s``: a loop of per-image ``model.predict`` calls (decode, stage 1, stage 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import preprocessing as pp
from .cascade import Cascade
from .score import list_images, score_folder


def run(model_dir: str, images: str, n_images: int = 512, batch_size: int = 32, naive_images: int = 64) -> dict:
    """Measure the three throughputs; returns the JSON-ready result dict."""
    cascade = Cascade.load(model_dir)
    root = Path(images)
    files = list_images(root)[:n_images]
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "images"
        for f in files:
            dst = subset / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((root / f).resolve(), dst)
        cascade.warm_up(batch_sizes=(1, batch_size))
        t = time.perf_counter()
        summary = score_folder(cascade, subset, Path(tmp) / "scores.csv", batch_size=batch_size, progress=False)
        score_s = time.perf_counter() - t
    pixels = np.stack([pp.to_uint8(root / f, cascade.spec) for f in files])
    x = pp.scale(pixels, cascade.spec)
    t = time.perf_counter()
    for s in range(0, len(x), batch_size):
        cascade.predict(x[s:s + batch_size], top_k=1)
    limit_s = time.perf_counter() - t
    naive = files[:naive_images]
    t = time.perf_counter()
    for f in naive:
        xi = pp.to_array(root / f, cascade.spec)[None]
        p = cascade.stage1.predict(xi, verbose=0)
        m = cascade.manufacturers[int(p.argmax())]
        if m in cascade.stage2:
            cascade.stage2[m].predict(xi, verbose=0)
    naive_s = time.perf_counter() - t
    result = {
        "model_version": cascade.version,
        "model_dir": str(model_dir),
        "input_shape": list(cascade.spec.input_shape),
        "batch_size": batch_size,
        "n_images": len(files),
        "n_naive_images": len(naive),
        "scored": summary["scored"],
        "images_per_s": len(files) / score_s,
        "limit_images_per_s": len(files) / limit_s,
        "naive_images_per_s": len(naive) / naive_s,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    result["ratio_to_limit"] = result["images_per_s"] / result["limit_images_per_s"]
    result["ratio_to_naive"] = result["images_per_s"] / result["naive_images_per_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=os.environ.get("PLANESPOTTER_MODEL_DIR", "models/latest"))
    p.add_argument("--images", default="data/raw/synth/images")
    p.add_argument("--n-images", type=int, default=512)
    p.add_argument("--naive-images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default="reports/bench/score.json")
    args = p.parse_args(argv)
    try:
        result = run(args.model_dir, args.images, args.n_images, args.batch_size, args.naive_images)
    except (FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
