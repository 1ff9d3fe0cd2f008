"""Batch scoring of a folder of images to CSV (``make score IMAGES=<dir> OUT=<csv>``).

Every image goes through the one inference pipeline (:class:`model.pipeline.Pipeline`): its
per-image step (decode, the localizer's and classifier's inputs) runs in a thread pool of its own,
sized to the cores, a few batches ahead of the forward passes (:func:`prepared_batches`), the
forward passes are batched (:meth:`~model.pipeline.Pipeline.run`), and every finished batch is
appended to the CSV as whole lines and flushed to disk. Re-running skips files already in the CSV,
so a killed run resumes; an unreadable file gets a row with its ``error`` instead of a crash.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from . import preprocessing as pp
from .cascade import Cascade
from .localize import box_text
from .pipeline import Pipeline, as_pipeline

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
#: ``family``/``type`` are empty where the answer does not reach that level (``manufacturer`` and its
#: probability too for answer level ``none``); ``answer`` is "B77W", "B777 family", "Boeing", "Other"
#: or "none"; ``joint_probability`` is P(manufacturer) x P(answer | manufacturer) (empty for
#: ``none``). Appended later: ``answer_level`` (``type``, ``family``, ``manufacturer``, ``none``),
#: ``answer_text`` (the answer in words, "not an aircraft", ...), ``aircraft_probability`` (the
#: localizer's, empty without one) and ``box`` (the crop the answer came from as "left top right
#: bottom" in the image's pixels after EXIF rotation, empty for the whole image). Then the
#: registration reader's (``make score REGISTRATION=1``; :func:`model.reader.fuse`):
#: ``answer_source`` (``image``, or ``registration`` when the type is the registry's),
#: ``registration`` and ``registration_icao_type`` (empty when none was read),
#: ``registration_agrees`` (``true``/``false``, empty when none) and ``registration_box``. Last,
#: ``unsure_reasons``: why the answer is unsure, codes of :data:`model.confidence.REASONS` joined
#: by ``,`` (empty when sure).
SCORE_COLUMNS = ("file", "manufacturer", "manufacturer_probability", "family", "family_probability", "type",
                 "type_probability", "answer", "joint_probability", "unsure", "model_version", "error",
                 "answer_level", "answer_text", "aircraft_probability", "box", "answer_source", "registration",
                 "registration_icao_type", "registration_agrees", "registration_box", "unsure_reasons")


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


def decode_workers() -> int:
    """Threads of the decode pool: the CPUs this process may run on (``os.sched_getaffinity``,
    which follows a container's cpuset), else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def prepared_batches(root: Path, files: list[str], pipeline: Pipeline, batch_size: int,
                     workers: int | None = None, prefetch: int = 2, read: bool = False):
    """Yield ``(names, inputs, errors)`` batches of ``files`` (paths relative to ``root``), in order.

    A pool of ``workers`` threads (default :func:`decode_workers`, the cores) runs the pipeline's
    per-image CPU step (:meth:`model.pipeline.Pipeline.prepare`: decode once, the localizer's and
    the classifier's inputs; Pillow releases the GIL while decoding and resizing, so the threads
    run in parallel) up to ``prefetch`` batches ahead of the one being yielded: while the caller
    runs the forward passes of one batch, the next ones are decoded. With ``read`` (and a
    pipeline that :attr:`~model.pipeline.Pipeline.reads`), the pool also reads each registration
    (:meth:`~model.pipeline.Pipeline.read`; after the crop instead, in
    :meth:`~model.pipeline.Pipeline.run`, for a version that crops to the aircraft).

    Yields:
        ``names`` (list of str, ``batch_size`` or fewer), ``inputs`` (one
        :class:`model.pipeline.Inputs` per name, ``None`` for an unreadable file) and ``errors``
        (list of str: ``""``, or why the file could not be decoded).
    """
    def prepare(rel: str):
        try:
            inputs = pipeline.prepare(root / rel, read=read)
            return (inputs if pipeline.two_phase else pipeline.read(inputs)), ""
        except (pp.ImageDecodeError, OSError, ValueError) as e:
            return None, str(e)

    starts = iter(range(0, len(files), batch_size))
    pool = ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="score-decode")
    queued: deque = deque()

    def queue_next() -> None:
        start = next(starts, None)
        if start is not None:
            names = files[start:start + batch_size]
            queued.append((names, [pool.submit(prepare, n) for n in names]))

    try:
        for _ in range(1 + max(0, prefetch)):
            queue_next()
        while queued:
            names, futures = queued.popleft()
            queue_next()
            done = [f.result() for f in futures]
            yield names, [d[0] for d in done], [d[1] for d in done]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def score_folder(model: Pipeline | Cascade, images: str | os.PathLike, out: str | os.PathLike, batch_size: int = 32,
                 num_shards: int = 1, shard_index: int = 0, progress: bool = True, read: bool = False) -> dict:
    """Score every image under ``images`` into the CSV ``out`` (resumable), through the one
    inference pipeline: :meth:`~model.pipeline.Pipeline.prepare` in the decode pool
    (:func:`prepared_batches`), :meth:`~model.pipeline.Pipeline.run` per batch.

    Args:
        model: the version's :class:`~model.pipeline.Pipeline` (or its loaded
            :class:`~model.cascade.Cascade`). images: the folder; out: the CSV.
        batch_size: images per forward pass; num_shards, shard_index: see :func:`list_images`.
        read: also read each registration (needs a pipeline with a registry).
    Returns:
        ``{"scored": n new rows, "skipped": n already present, "errors": n unreadable, "out": path}``.
    Raises:
        FileNotFoundError: no such folder. ValueError: ``out`` has other columns (:func:`done_files`).
    """
    pipeline = as_pipeline(model)
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
        for names, inputs, errors in prepared_batches(root, todo, pipeline, batch_size, read=read):
            ok = [i for i, e in enumerate(errors) if not e]
            preds = dict(zip(ok, pipeline.run([inputs[i] for i in ok], top_k=1)))
            buf = io.StringIO()
            w = csv.writer(buf)
            for i, name in enumerate(names):
                n_err += i not in preds
                w.writerow(score_row(name, preds.get(i), pipeline.version, errors[i]))
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(names))
        bar.close()
    return {"scored": len(todo), "skipped": len(files) - len(todo), "errors": n_err, "out": str(out)}


def score_row(name: str, pred: dict | None, version: str, error: str = "") -> list[str]:
    """One CSV row in :data:`SCORE_COLUMNS` order.

    Args:
        name: the file, relative to the scored folder. pred: one result of
            :meth:`model.cascade.Cascade.predict` (``None`` for an unreadable file: every
            prediction column empty). version: the model version. error: why the file could not
            be read (``""`` when it could).
    Returns:
        The row's fields as text: probabilities with 6 decimals, ``unsure`` ``true``/``false``,
        ``box`` as "left top right bottom" (:func:`model.localize.box_text`); empty where a level
        is not answered.
    """
    row = dict.fromkeys(SCORE_COLUMNS, "")
    row.update(file=name, model_version=version, error=error)
    if pred is not None:
        m, f, t, a = pred["manufacturer"], pred["family"], pred["type"], pred["answer"]
        row.update(manufacturer=m["label"] or "", manufacturer_probability=_fmt(m["probability"]),
                   family=f["label"] or "", family_probability=_fmt(f["probability"]),
                   type=t["label"] or "", type_probability=_fmt(t["probability"]), answer=a["label"],
                   joint_probability="" if a["level"] == "none" else _fmt(pred["branches"][0]["joint_probability"]),
                   unsure=str(pred["unsure"]).lower(), answer_level=a["level"], answer_text=a.get("text", ""),
                   aircraft_probability=_fmt((pred.get("aircraft") or {}).get("probability")),
                   box=box_text(pred.get("box")), answer_source=a.get("source", "image"),
                   unsure_reasons=",".join(pred.get("unsure_reasons", [])))
        reg = pred.get("registration")
        if reg:
            row.update(registration=reg["text"], registration_icao_type=reg["icao_type"],
                       registration_agrees=str(reg["agrees"]).lower(), registration_box=box_text(reg["box"]))
    return [row[c] for c in SCORE_COLUMNS]


def _fmt(v) -> str:
    return "" if v is None else f"{v:.6f}"
