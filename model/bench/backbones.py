"""Throughput of the backbones' pooled-feature forward pass (``make bench-backbones``).

For each ``name:size`` run: build the registered backbone (:mod:`model.backbones`) with its
pretrained weights at ``size`` x ``size``, warm it up (graph tracing), then time ``batches``
calls of ``predict_on_batch`` on float32 batches of random [0, 1] images. Reports images/s from
the median batch time (robust to other processes on a shared machine) and from the mean, plus
the load average before and after each run, and writes JSON atomically.

Command line::

    python -m model.bench.backbones [--runs lite0:224 lite0:288 lite2:260] [--batch-size 32]
        [--batches 8] [--out reports/bench/backbones.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import backbones
from ..io import write_json

DEFAULT_RUNS = ("lite0:224", "lite0:288", "lite2:260")


def parse_run(text: str) -> tuple[str, int]:
    """``"lite2:260"`` → ``("lite2", 260)``; ``"lite2"`` → the backbone's default size.

    Raises:
        ValueError: unknown backbone or a size that is not a positive integer.
    """
    name, _, size = text.partition(":")
    bb = backbones.get(name)
    if not size:
        return bb.name, bb.default_image_size
    if not size.isdigit() or int(size) <= 0:
        raise ValueError(f"bad image size in {text!r}")
    return bb.name, int(size)


def bench_one(name: str, size: int, batch_size: int = 32, batches: int = 8, weights: str | None = None,
              seed: int = 0) -> dict:
    """Time the pooled-feature forward pass of backbone ``name`` at ``size`` px.

    Args:
        batch_size: images per ``predict_on_batch`` call; batches: timed calls (after 2 warm-up
            calls); weights: as :meth:`model.backbones.Backbone.resolve_weights` (pretrained).

    Returns:
        ``{"backbone", "image_size", "batch_size", "batches", "feature_dim", "params",
        "images_per_s" (batch / median batch time), "images_per_s_mean", "batch_seconds" (list),
        "build_seconds", "loadavg_before", "loadavg_after"}``.

    Raises:
        ValueError: unknown backbone; WeightsUnavailableError: weights missing offline.
    """
    bb = backbones.get(name)
    load_before = os.getloadavg()
    t = time.perf_counter()
    model = bb.build((size, size, 3), weights)
    build_s = time.perf_counter() - t
    x = np.random.default_rng(seed).uniform(0.0, 1.0, (batch_size, size, size, 3)).astype(np.float32)
    for _ in range(2):  # tracing and first-call allocation
        out = model.predict_on_batch(x)
    assert np.asarray(out).shape == (batch_size, bb.feature_dim)
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - t)
    times_a = np.asarray(times)
    return {
        "backbone": bb.name, "image_size": size, "batch_size": batch_size, "batches": batches,
        "feature_dim": bb.feature_dim, "params": int(model.count_params()),
        "images_per_s": round(batch_size / float(np.median(times_a)), 2),
        "images_per_s_mean": round(batch_size * batches / float(times_a.sum()), 2),
        "batch_seconds": [round(float(s), 4) for s in times],
        "build_seconds": round(build_s, 2),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def machine() -> dict:
    """CPU count, platform, TensorFlow/Keras versions and thread settings, for the report."""
    import keras  # deferred: TensorFlow start-up, only when the benchmark runs
    import tensorflow as tf  # deferred: as keras

    return {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def main(argv: Iterable[str] | None = None) -> int:
    """Run the benchmark and write the JSON report (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m model.bench.backbones", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="name:size pairs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="timed batches per run (after 2 warm-up batches)")
    p.add_argument("--weights", default=None, help="weights for every run (default: each backbone's pretrained)")
    p.add_argument("--out", type=Path, default=Path("reports/bench/backbones.json"))
    args = p.parse_args(None if argv is None else list(argv))
    try:
        runs = [parse_run(r) for r in args.runs]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    results = []
    for name, size in runs:
        r = bench_one(name, size, args.batch_size, args.batches, args.weights)
        print(f"{name:>6} @ {size} px: {r['images_per_s']:7.1f} images/s (median batch), "
              f"{r['images_per_s_mean']:7.1f} (mean); load {r['loadavg_before'][0]} -> {r['loadavg_after'][0]}",
              flush=True)
        results.append(r)
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "what": "pooled-feature forward pass (model.backbones.<name>.build, float32 [0, 1] input), "
                      "predict_on_batch, images/s = batch size / median batch time",
              "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
