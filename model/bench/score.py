"""Batch-scoring benchmark (``make bench-score``): ``make score``'s images/s against the limits.

Figures in one run, same model, same batch size:

- ``images_per_s``: :func:`model.score.score_folder` end to end (pool decode, batched
  inference, CSV appends) over ``--images`` (the renders by default);
- ``limit_images_per_s``: the version's forward passes alone on pre-decoded tensors
  (:func:`model_forward`: the localizer when there is one, then ``Cascade.predict``, on float32
  batches) — the most this machine can do;
- ``naive_images_per_s``: a loop of per-image ``model.predict`` calls (decode, stage 1, stage 2);
- with ``--payload-width 800,4000,6000``, a ``payloads`` row per width: ``make score`` over a
  folder of the smoke photos re-encoded at that width (:func:`camera_payloads`: at most 800 px
  wide, or exactly 4000 / 6000 px wide, upscaled, JPEG q90 — real camera sizes), beside the
  forward limit and the decode + forward limit with the decode spread over the same cores
  (:func:`decode_limit`).

``--jpeg-draft N`` measures the version as if its ``preprocessing.json`` had ``jpeg_draft = N``
(:mod:`model.preprocessing`): an older version's weights with today's scaled JPEG decode.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import io as mio
from .. import preprocessing as pp
from ..cascade import Cascade
from ..pipeline import Inputs, Pipeline, as_pipeline
from ..score import decode_workers, list_images, score_folder

ROOT = Path(__file__).resolve().parents[1]
#: The smoke photos (../shared/data/smoke-airliners): never copied into the repository.
SMOKE_PHOTOS = ROOT.parent / "shared" / "data" / "smoke-airliners"
#: Widths at or below this are "at most this wide" (web re-encodes); above it, "exactly this wide".
WEB_WIDTH = 800


def camera_payloads(width: int, folder: str | os.PathLike = SMOKE_PHOTOS, limit: int = 12,
                    quality: int = 90) -> list[bytes]:
    """JPEG bytes of up to ``limit`` photos of ``folder`` (sorted ``*.jpg``) at a payload width.

    Widths up to :data:`WEB_WIDTH` mean "at most ``width`` pixels wide" (a web photo: wider ones
    are downscaled, Pillow bilinear); wider ones mean "exactly ``width`` pixels wide" (a camera
    file: 4000 px is about 11 MP at 3:2, 6000 px 24 MP), upscaled with Pillow bicubic. Every
    payload is re-encoded as JPEG at ``quality`` (4:2:0), built in memory (the photos may not be
    redistributed: nothing is written into the repository). Without photos, synthetic gradient
    JPEGs of that width at 3:2 stand in.

    Returns:
        A list of encoded JPEGs (bytes), in file order.
    Raises:
        ValueError: ``width < 16``.
    """
    if width < 16:
        raise ValueError(f"payload width must be at least 16 px, got {width}")
    out = []
    for p in sorted(Path(folder).glob("*.jpg"))[:limit]:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if width > WEB_WIDTH and im.width != width:
                im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BICUBIC)
            elif im.width > width:
                im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=quality)
            out.append(buf.getvalue())
    if not out:
        h = width * 2 // 3 if width > WEB_WIDTH else 427 * min(width, 640) // 640
        w = width if width > WEB_WIDTH else min(width, 640)
        for i in range(4):
            yy, xx = np.mgrid[0:h, 0:w]
            arr = np.stack([(xx * 255 // (w - 1)), (yy * 255 // (h - 1)), np.full_like(xx, 60 * i)], -1)
            buf = io.BytesIO()
            Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=quality)
            out.append(buf.getvalue())
    return out


def decode_ms(payloads: list[bytes], spec: pp.PreprocessingSpec, rounds: int = 2) -> float:
    """Mean milliseconds of :func:`model.preprocessing.to_array` per payload, one thread (the
    first pass is a warm-up; ``rounds`` timed passes follow)."""
    for d in payloads:
        pp.to_array(d, spec)
    t = time.perf_counter()
    for _ in range(rounds):
        for d in payloads:
            pp.to_array(d, spec)
    return (time.perf_counter() - t) / (rounds * len(payloads)) * 1000


def decode_limit(forward_per_s: float, decode_ms_per_image: float, cores: int) -> float:
    """Images/s of decode + forward when both share ``cores`` and do not overlap in CPU time: the
    forward pass at ``forward_per_s`` (it already uses every core), plus each image's decode
    (``decode_ms_per_image`` on one core) spread over ``cores`` —
    ``1 / (1 / forward_per_s + decode_s / cores)``. An upper bound for a pipeline on this machine."""
    return 1.0 / (1.0 / forward_per_s + decode_ms_per_image / 1000.0 / max(1, cores))


def model_forward(cascade: Cascade | Pipeline, x: np.ndarray, top_k: int = 1) -> list[dict]:
    """Every forward pass one batch of images costs the version, through the inference pipeline
    (:meth:`model.pipeline.Pipeline.forward`): the localizer on the whole images when the version
    has one (the "not an aircraft" gate), then the cascade (stage 1, stage 2, TTA when the
    version asks) on ``x``.

    For timing only: the localizer is fed the top-left ``S x S`` corner of ``x`` (float32
    ``(n, H, W, 3)`` in [0, 1]; ``S`` the localizer's input size, zero-padded where ``x`` is
    smaller), which costs what a whole image resized to ``S`` costs, without the resize. Returns
    the pipeline's answers.
    """
    pipeline = as_pipeline(cascade)
    size = pipeline.cascade.localizer_size
    batch = []
    for row in x:
        x_loc = None
        if size is not None:
            h, w = min(size, x.shape[1]), min(size, x.shape[2])
            x_loc = np.zeros((size, size, 3), np.float32)
            x_loc[:h, :w] = row[:h, :w]
        batch.append(Inputs(x=row, x_loc=x_loc))
    return pipeline.forward(batch, top_k=top_k)


def forward_limit(cascade: Cascade, x: np.ndarray, batch_size: int, min_images: int = 96) -> float:
    """Images/s of the version's forward passes alone (:func:`model_forward`: localizer and
    cascade) on float32 batches of ``batch_size`` cycled from ``x`` (at least ``min_images``
    images, after one warm-up call)."""
    batch = np.stack([x[i % len(x)] for i in range(batch_size)])
    model_forward(cascade, batch)
    calls = max(2, -(-min_images // batch_size))
    t = time.perf_counter()
    for _ in range(calls):
        model_forward(cascade, batch)
    return calls * batch_size / (time.perf_counter() - t)


def respec_version(src: str | os.PathLike, dest_parent: str | os.PathLike, **changes) -> Path:
    """A copy of model version ``src`` under ``dest_parent`` whose ``preprocessing.json`` has the
    spec fields ``changes`` (e.g. ``jpeg_draft=2``), with ``reference_sha256`` and the manifest's
    sha256s recomputed; the Keras files are symlinked. For benchmarks and tests: measure an
    existing version's weights with another preprocessing.

    Returns:
        The new version folder (``dest_parent/<version>``).
    Raises:
        model.io.ModelLoadError: ``src`` is not a complete version. TypeError/ValueError: a bad field.
    """
    src = Path(src).resolve()
    manifest = mio.check_version(src)
    dest = Path(dest_parent) / manifest["version"]
    dest.mkdir(parents=True)
    meta = json.loads((src / mio.PREPROCESSING).read_text())
    spec = dataclasses.replace(pp.PreprocessingSpec.from_dict(meta), **changes)
    for name in manifest["files"]:
        if name.endswith(".keras"):
            os.symlink(src / name, dest / name)
        elif name != mio.PREPROCESSING:
            shutil.copy2(src / name, dest / name)
    mio.write_json(dest / mio.PREPROCESSING, {**spec.to_dict(), "reference_sha256": pp.reference_checksum(spec)})
    files = {name: mio.sha256_file(dest / name) for name in manifest["files"]}
    mio.write_json(dest / mio.MANIFEST, {**manifest, "files": files})
    return dest


def run_payloads(cascade: Cascade, widths: list[int], photos: str | os.PathLike = SMOKE_PHOTOS,
                 n_images: int = 96, batch_size: int = 32) -> list[dict]:
    """``make score`` over a folder of each payload width (see the module docstring).

    Each folder holds ``n_images`` files (symlinks cycling over the width's payloads, written
    once to a temporary folder). Returns one row per width: ``payload_width``, ``megapixels`` and
    ``bytes`` (means), ``images_per_s``, ``limit_images_per_s`` (forward alone, measured once on
    the first width's tensors), ``decode_ms_per_image`` (one thread), ``dct_scale`` (per photo),
    ``decode_limit_images_per_s`` (:func:`decode_limit` over :func:`model.score.decode_workers`
    cores) and the ratios of ``images_per_s`` to both limits and to the first width's rate.
    """
    cores = decode_workers()
    rows, limit = [], None
    with tempfile.TemporaryDirectory(prefix="planespotter-bench-") as tmp:
        for width in widths:
            payloads = camera_payloads(width, photos)
            if limit is None:
                limit = forward_limit(cascade, np.stack([pp.to_array(d, cascade.spec) for d in payloads]), batch_size)
            src, folder = Path(tmp) / f"src-{width}", Path(tmp) / f"images-{width}"
            src.mkdir()
            folder.mkdir()
            for i, d in enumerate(payloads):
                (src / f"{i:02d}.jpg").write_bytes(d)
            for k in range(n_images):
                os.symlink(src / f"{k % len(payloads):02d}.jpg", folder / f"{k:05d}.jpg")
            t = time.perf_counter()
            summary = score_folder(cascade, folder, Path(tmp) / f"scores-{width}.csv", batch_size=batch_size,
                                   progress=False)
            rate = n_images / (time.perf_counter() - t)
            dms = decode_ms(payloads, cascade.spec)
            sizes = [Image.open(io.BytesIO(d)).size for d in payloads]
            dlimit = decode_limit(limit, dms, cores)
            rows.append({
                "payload_width": width, "n_photos": len(payloads), "n_images": n_images,
                "megapixels": round(float(np.mean([w * h for w, h in sizes])) / 1e6, 2),
                "bytes": int(np.mean([len(d) for d in payloads])),
                "dct_scale": [pp.decode_for_spec(d, cascade.spec)[1] for d in payloads],
                "scored": summary["scored"], "errors": summary["errors"],
                "images_per_s": round(rate, 2), "limit_images_per_s": round(limit, 2),
                "decode_ms_per_image": round(dms, 2), "decode_limit_images_per_s": round(dlimit, 2),
                "ratio_to_limit": round(rate / limit, 3), "ratio_to_decode_limit": round(rate / dlimit, 3),
            })
    for r in rows:
        r["ratio_to_first_width"] = round(r["images_per_s"] / rows[0]["images_per_s"], 3)
    return rows


def run(model_dir: str, images: str | None, n_images: int = 512, batch_size: int = 32, naive_images: int = 64,
        widths: list[int] | None = None, photos: str | os.PathLike = SMOKE_PHOTOS, payload_images: int = 96,
        jpeg_draft: int | None = None) -> dict:
    """Measure the throughputs; returns the JSON-ready result dict.

    Args:
        model_dir: model version; images: folder for the end-to-end / limit / naive figures
            (``None``: only the payload rows); widths: payload widths (``None``: no payload rows);
        jpeg_draft: override the version's ``spec.jpeg_draft`` (``None``: keep it).
    Raises:
        FileNotFoundError: no images under ``images``.
    """
    cascade = Cascade.load(model_dir)
    if jpeg_draft is not None:
        cascade.spec = dataclasses.replace(cascade.spec, jpeg_draft=jpeg_draft)
    cascade.warm_up(batch_sizes=(1, batch_size))
    result = {"model_version": cascade.version, "model_dir": str(model_dir),
              "input_shape": list(cascade.spec.input_shape), "jpeg_draft": cascade.spec.jpeg_draft,
              "batch_size": batch_size, "decode_workers": decode_workers(),
              "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if images is not None:
        result.update(_run_folder(cascade, images, n_images, batch_size, naive_images))
    if widths:
        result["payloads"] = run_payloads(cascade, widths, photos, payload_images, batch_size)
    return result


def _run_folder(cascade: Cascade, images: str, n_images: int, batch_size: int, naive_images: int) -> dict:
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
        t = time.perf_counter()
        summary = score_folder(cascade, subset, Path(tmp) / "scores.csv", batch_size=batch_size, progress=False)
        score_s = time.perf_counter() - t
    pixels = np.stack([pp.to_uint8(root / f, cascade.spec) for f in files])
    x = pp.scale(pixels, cascade.spec)
    t = time.perf_counter()
    for s in range(0, len(x), batch_size):
        model_forward(cascade, x[s:s + batch_size])
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
    out = {"images": str(root), "n_images": len(files), "n_naive_images": len(naive), "scored": summary["scored"],
           "images_per_s": len(files) / score_s, "limit_images_per_s": len(files) / limit_s,
           "naive_images_per_s": len(naive) / naive_s}
    out["ratio_to_limit"] = out["images_per_s"] / out["limit_images_per_s"]
    out["ratio_to_naive"] = out["images_per_s"] / out["naive_images_per_s"]
    return out


def _widths(text: str) -> list[int]:
    try:
        widths = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--payload-width wants comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 16:
        raise argparse.ArgumentTypeError(f"--payload-width wants widths of at least 16 px, got {text!r}")
    return widths


def print_payloads(rows: list[dict]) -> None:
    """The payload rows as a table on stdout."""
    cols = ["payload_width", "megapixels", "images_per_s", "limit_images_per_s", "decode_ms_per_image",
            "decode_limit_images_per_s", "ratio_to_limit", "ratio_to_decode_limit", "ratio_to_first_width"]
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r[c]):>14}" for c in cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=os.environ.get("PLANESPOTTER_MODEL_DIR", "models/latest"))
    p.add_argument("--images", default="data/raw/synth/images",
                   help="folder for the end-to-end, limit and naive figures ('' to skip)")
    p.add_argument("--n-images", type=int, default=512)
    p.add_argument("--naive-images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--payload-width", type=_widths, default=None, metavar="W[,W...]",
                   help="also score folders of the smoke photos at these widths, e.g. 800,4000,6000")
    p.add_argument("--payload-images", type=int, default=96, help="files per payload folder")
    p.add_argument("--photos", default=str(SMOKE_PHOTOS))
    p.add_argument("--jpeg-draft", type=int, default=None,
                   help="measure as if the version's spec had this jpeg_draft (default: its own)")
    p.add_argument("--out", default="reports/bench/score.json")
    args = p.parse_args(argv)
    try:
        result = run(args.model_dir, args.images or None, args.n_images, args.batch_size, args.naive_images,
                     args.payload_width, args.photos, args.payload_images, args.jpeg_draft)
    except (FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps({k: v for k, v in result.items() if k != "payloads"}, indent=2))
    if result.get("payloads"):
        print_payloads(result["payloads"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
