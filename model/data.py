"""Reading a dataset (``metadata.csv`` of the shared schema) into arrays for training.

Images are decoded and resized once per (image sha256, preprocessing spec) with the project's
one preprocessing (:mod:`model.preprocessing`), in parallel in a ``tf.data`` pipeline, and cached
as a uint8 ``.npy`` under ``data/processed/`` so re-training skips decoding.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from dataset.schema import COLUMNS, METADATA_FILE, SPLITS, family_of

from . import preprocessing as pp
from .io import write_npy

PROCESSED_DIR = Path("data/processed")


class DatasetError(ValueError):
    """The dataset CSV is missing, malformed or unusable."""


def read_metadata(path: str | os.PathLike | list) -> pd.DataFrame:
    """Read one dataset CSV (or the ``metadata.csv`` inside a dataset folder), or several, stacked.

    Renders (``synth``), scraped photos (``scrape``) and imported photos (``ingest``) share the
    schema (:mod:`dataset.schema`), so one reader serves them all. Columns added to the schema
    later (:data:`dataset.schema.OPTIONAL_COLUMNS`) are filled with ``""``; an empty ``family`` is
    derived from ``icao_type`` (:func:`dataset.schema.family_of`).

    Returns:
        DataFrame with every schema column as ``str`` ('' for missing) and extra columns
        ``abs_path`` (absolute image path), ``dataset`` (the CSV it came from) and ``domain``
        (``"render"`` for FlightGear-derived rows, ``source`` starting with ``flightgear``; else
        ``"photo"``).
    Raises:
        DatasetError: file missing, columns missing, or no rows.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise DatasetError("no dataset given")
        return pd.concat([read_metadata(p) for p in path], ignore_index=True)
    p = Path(path)
    if p.is_dir():
        p = p / METADATA_FILE
    if not p.is_file():
        raise DatasetError(f"dataset CSV not found: {p}")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    missing = [c for c in ("image_path", "manufacturer", "icao_type", "split") if c not in df.columns]
    if missing:
        raise DatasetError(f"{p}: missing columns {missing}; expected the schema {list(COLUMNS)}")
    if df.empty:
        raise DatasetError(f"{p}: no rows")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    empty_family = df["family"].eq("")
    df.loc[empty_family, "family"] = df.loc[empty_family, "icao_type"].map(family_of)
    df["abs_path"] = [str((p.parent / ip).resolve()) for ip in df["image_path"]]
    df["dataset"] = str(p)
    df["domain"] = np.where(df["source"].str.startswith("flightgear"), "render", "photo")
    return df


def split_group(df: pd.DataFrame) -> pd.Series:
    """The unit that must not span two splits, per row: the livery (manufacturer and ``airline``)
    for renders; for
    photos the connected group of rows linked by a shared airframe (``registration``) or a
    near-duplicate link (``near_duplicate_of`` naming another row's ``image_path``), a photo with
    neither being its own group.

    Returns:
        str Series aligned with ``df``: ``"livery:<manufacturer>/<airline>"`` or
        ``"photo:<image_path of the group's first row>"``.
    """
    parent = list(range(len(df)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    render = (df["domain"] == "render").to_numpy() if "domain" in df else np.zeros(len(df), bool)
    first: dict[tuple[str, str], int] = {}
    for i, (reg, path, dup) in enumerate(zip(df["registration"], df["image_path"], df["near_duplicate_of"])):
        if render[i]:
            continue
        for key in (("reg", reg), ("path", path), ("path", dup)):
            if key[1]:
                if key in first:
                    union(i, first[key])
                else:
                    first[key] = i
    paths = df["image_path"].tolist()
    keys = [f"livery:{m}/{a}" if r else "photo:" + paths[root(i)]
            for i, (m, a, r) in enumerate(zip(df["manufacturer"], df["airline"], render))]
    return pd.Series(keys, index=df.index)


def assign_splits(df: pd.DataFrame, seed: int = 0, fractions=(0.7, 0.15, 0.15),
                  group_column: str | None = None) -> pd.DataFrame:
    """Fill empty ``split`` values by group so no group spans two splits: by default the
    :func:`split_group` (livery for renders, airframe or image for photos), else ``group_column``.

    Groups are shuffled with ``seed`` within each stratum (domain and manufacturer of the group's
    first row) and cut by cumulative image count at ``fractions`` (train, validation, test). Rows
    that already have a split keep it.
    """
    df = df.copy()
    todo = df["split"].eq("")
    if not todo.any():
        return df
    rng = np.random.default_rng(seed)
    keys = split_group(df) if group_column is None else df[group_column].replace("", "(unknown)")
    keys = keys.set_axis(df.index)[todo]
    domain = df.get("domain", pd.Series("photo", index=df.index))[todo]
    stratum = (domain + "/" + df.loc[todo, "manufacturer"]).groupby(keys).transform("first")
    bounds = np.cumsum(fractions)[:-1]
    for _, groups in keys.groupby(stratum, sort=True):
        counts = groups.value_counts().sort_index()
        order = counts.index.to_numpy()[rng.permutation(len(counts))]
        sizes = counts[order].to_numpy() / counts.sum()
        starts = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])
        split_of = {g: SPLITS[int(np.searchsorted(bounds, start, side="right"))]
                    for g, start in zip(order, starts)}
        df.loc[groups.index, "split"] = groups.map(split_of).to_numpy()
    return df


def _cache_key(shas: list[str], spec: pp.PreprocessingSpec, crop_boxes: list[str] | None = None) -> str:
    h = hashlib.sha256(spec.key().encode())
    for s in shas:
        h.update(s.encode())
    if crop_boxes is not None and any(crop_boxes):
        for b in crop_boxes:
            h.update(f"|{b}".encode())
    return h.hexdigest()[:24]


def _file_sha(paths: list[str]) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def load_pixels(paths: list[str], spec: pp.PreprocessingSpec, shas: list[str] | None = None,
                cache_dir: Path | None = PROCESSED_DIR, batch_size: int = 256,
                crop_boxes: list[str] | None = None, draft_boxes: list[str] | None = None) -> np.ndarray:
    """Decode, crop and resize images in parallel (``tf.data`` map with AUTOTUNE, then prefetch; Pillow
    in threads where TensorFlow is not installed),
    with the project's one preprocessing (:func:`model.preprocessing.to_uint8`).

    Args:
        paths: image files (JPEG/PNG/WebP).
        spec: the preprocessing spec (size and resize filter).
        shas: sha256 of each file (from the CSV) for the cache key; computed when ``None``.
        cache_dir: where the uint8 cache lives; ``None`` disables caching.
        crop_boxes: the schema's ``crop_box`` per image (``"left top right bottom"`` or ``""``).
        draft_boxes: the region whose size chooses a JPEG's decode scale (``spec.jpeg_draft``),
            when it differs from the crop: with an aircraft crop, the dataset's ``crop_box``, as
            serving decodes the image once for the localizer and the crop
            (:func:`model.localize.decode`). Default: ``crop_boxes``.
    Returns:
        uint8 array ``(len(paths), spec.height, spec.width, 3)``.
    Raises:
        preprocessing.ImageDecodeError: an image cannot be decoded. ValueError: a bad crop box.
    """
    try:
        import tensorflow as tf  # deferred: TensorFlow start-up (~3 s), and optional (other Keras backends)
    except ImportError:
        tf = None
    if not paths:
        return np.zeros((0, *spec.input_shape), np.uint8)
    cache = None
    if cache_dir is not None:
        shas = shas if shas is not None and all(shas) else _file_sha(paths)
        key = _cache_key(shas, spec, crop_boxes)
        if draft_boxes is not None and getattr(spec, "jpeg_draft", 0):
            key = _cache_key(shas, spec, [f"{c}@{d}" for c, d in zip(crop_boxes or [""] * len(paths), draft_boxes)])
        cache = Path(cache_dir) / f"pixels-{key}.npy"
        if cache.is_file():
            return np.load(cache)
    boxes = list(crop_boxes) if crop_boxes is not None else [""] * len(paths)
    if len(boxes) != len(paths):
        raise ValueError(f"{len(boxes)} crop boxes for {len(paths)} images")
    for b in boxes:  # fail before decoding anything
        pp.parse_crop_box(b)
    drafts = None
    if draft_boxes is not None and getattr(spec, "jpeg_draft", 0):
        drafts = {p: d for p, d in zip(paths, draft_boxes)}

    def decode(path, box):
        as_str = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        path, box = as_str(path), as_str(box)
        if drafts is None:
            return pp.to_uint8(path, spec, box)
        img, s = pp.decode_for_spec(path, spec, drafts[path] or None)
        return pp.to_uint8(img, spec, box or None, dct_scale=s)

    if tf is None:  # another Keras backend (e.g. PyTorch on a GPU machine): Pillow in threads
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            out = np.stack(list(pool.map(decode, paths, boxes)))
    else:
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths), np.asarray(boxes, dtype=str)))
        ds = ds.map(lambda p, b: tf.ensure_shape(tf.numpy_function(decode, [p, b], tf.uint8), spec.input_shape),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        out, at = np.empty((len(paths), *spec.input_shape), np.uint8), 0
        for b in ds:  # filled batch by batch: the pixels are held once, not as batches plus their concatenation
            out[at:at + len(b)] = b.numpy()
            at += len(b)
    if cache is not None:
        write_npy(cache, out)
    return out
