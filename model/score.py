"""Batch scoring of a folder of images to CSV (``make score IMAGES=<dir> OUT=<csv>``).

Decoding runs in parallel in a ``tf.data`` pipeline (the project's Pillow preprocessing inside
``tf.numpy_function``), inference is batched (``predict_on_batch``), and every finished batch is
appended to the CSV as whole lines and flushed to disk. Re-running skips files already in the CSV,
so a killed run resumes; an unreadable file gets a row with its ``error`` instead of a crash.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from . import preprocessing as pp
from .cascade import Cascade

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
#: ``family``/``type`` are empty where the answer does not reach that level; ``answer`` is "B77W",
#: "B777 family" or "Boeing"; ``joint_probability`` is P(manufacturer) x P(answer | manufacturer).
SCORE_COLUMNS = ("file", "manufacturer", "manufacturer_probability", "family", "family_probability", "type",
                 "type_probability", "answer", "joint_probability", "unsure", "model_version", "error")


def list_images(root: str | os.PathLike, num_shards: int = 1, shard_index: int = 0) -> list[str]:
    """Image files under ``root`` (recursive, by suffix), sorted, as paths relative to ``root``.

    With ``num_shards > 1`` only every ``num_shards``-th file starting at ``shard_index`` is
    returned (the Kubernetes Indexed Job shards this way).

    Raises:
        FileNotFoundError: ``root`` is not a folder. ValueError: bad shard arguments.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got {shard_index}, {num_shards}")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return files[shard_index::num_shards]


def done_files(out: Path) -> set[str]:
    """Files already scored in ``out``; a trailing partial line (a crash mid-write) is cut off.

    Raises:
        ValueError: ``out`` has another header than :data:`SCORE_COLUMNS` (an older release's CSV:
            resuming into it would misalign the columns).
    """
    if not out.is_file() or out.stat().st_size == 0:
        return set()
    data = out.read_bytes()
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if header != ",".join(SCORE_COLUMNS):
        raise ValueError(f"{out} has the columns {header!r}, not {','.join(SCORE_COLUMNS)!r} "
                         "(written by another release?): choose another OUT or remove it")
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(out, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    return {r["file"] for r in rows}


def decoded_batches(root: Path, files: list[str], spec: pp.PreprocessingSpec, batch_size: int):
    """Yield ``(names, pixels uint8 (b, H, W, 3), errors)`` batches, decoded in parallel by tf.data."""
    import tensorflow as tf

    def decode(rel):
        try:
            return pp.to_uint8(root / rel.decode(), spec), b""
        except (pp.ImageDecodeError, OSError) as e:
            return np.zeros(spec.input_shape, np.uint8), str(e).encode()

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(files, dtype=object).astype(str))

    def tf_decode(rel):
        img, err = tf.numpy_function(decode, [rel], (tf.uint8, tf.string))
        return rel, tf.ensure_shape(img, spec.input_shape), err

    ds = ds.map(tf_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for names, pixels, errors in ds.batch(batch_size).prefetch(2):
        yield ([n.decode() for n in names.numpy()], pixels.numpy(), [e.decode() for e in errors.numpy()])


def score_folder(cascade: Cascade, images: str | os.PathLike, out: str | os.PathLike, batch_size: int = 32,
                 num_shards: int = 1, shard_index: int = 0, progress: bool = True) -> dict:
    """Score every image under ``images`` into the CSV ``out`` (resumable).

    Returns:
        ``{"scored": n new rows, "skipped": n already present, "errors": n unreadable, "out": path}``.
    """
    from tqdm import tqdm

    root, out = Path(images), Path(out)
    files = list_images(root, num_shards, shard_index)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_files(out)
    todo = [f for f in files if f not in done]
    new_file = not out.is_file() or out.stat().st_size == 0
    n_err = 0
    with open(out, "a", newline="", encoding="utf-8") as fh:
        if new_file:
            fh.write(",".join(SCORE_COLUMNS) + "\r\n")
            fh.flush()
        bar = tqdm(total=len(todo), unit="img", desc="score", disable=not progress)
        if todo:
            for names, pixels, errors in decoded_batches(root, todo, cascade.spec, batch_size):
                ok = [i for i, e in enumerate(errors) if not e]
                preds = cascade.predict(pp.scale(pixels[ok], cascade.spec), top_k=1) if ok else []
                by_row = dict(zip(ok, preds))
                buf = io.StringIO()
                w = csv.writer(buf)
                for i, name in enumerate(names):
                    p = by_row.get(i)
                    if p is None:
                        n_err += 1
                        w.writerow([name] + [""] * (len(SCORE_COLUMNS) - 3) + [cascade.version, errors[i]])
                    else:
                        w.writerow([name, p["manufacturer"]["label"], f"{p['manufacturer']['probability']:.6f}",
                                    p["family"]["label"] or "", _fmt(p["family"]["probability"]),
                                    p["type"]["label"] or "", _fmt(p["type"]["probability"]),
                                    p["answer"]["label"], _fmt(p["branches"][0]["joint_probability"]),
                                    str(p["unsure"]).lower(), cascade.version, ""])
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
                bar.update(len(names))
        bar.close()
    return {"scored": len(todo), "skipped": len(files) - len(todo), "errors": n_err, "out": str(out)}


def _fmt(v) -> str:
    return "" if v is None else f"{v:.6f}"
