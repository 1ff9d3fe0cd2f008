"""Reading a dataset (``metadata.csv`` of the shared schema) into arrays for training.

Images are decoded and resized once per (image sha256, preprocessing spec) with the project's
one preprocessing (:mod:`model.preprocessing`), in parallel in a ``tf.data`` pipeline, and cached
as a uint8 ``.npy`` under ``data/processed/`` so re-training skips decoding.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from scrape.schema import COLUMNS, METADATA_FILE, SPLITS

from . import preprocessing as pp

PROCESSED_DIR = Path("data/processed")


class DatasetError(ValueError):
    """The dataset CSV is missing, malformed or unusable."""


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read a dataset CSV (or the ``metadata.csv`` inside a dataset folder).

    Returns:
        DataFrame with every schema column as ``str`` ('' for missing) and an extra column
        ``abs_path`` (absolute image path).
    Raises:
        DatasetError: file missing, columns missing, or no rows.
    """
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
    df["abs_path"] = [str((p.parent / ip).resolve()) for ip in df["image_path"]]
    return df


def assign_splits(df: pd.DataFrame, seed: int = 0, fractions=(0.7, 0.15, 0.15),
                  group_column: str = "airline") -> pd.DataFrame:
    """Fill empty ``split`` values by group (default: airline/livery), so no group spans two splits.

    Groups are shuffled with ``seed`` within each manufacturer and cut by cumulative image count
    at ``fractions`` (train, validation, test). Rows that already have a split keep it.
    """
    df = df.copy()
    todo = df["split"].eq("")
    if not todo.any():
        return df
    rng = np.random.default_rng(seed)
    for _, sub in df[todo].groupby("manufacturer"):
        groups = sub[group_column].replace("", "(unknown)")
        counts = groups.value_counts().sort_index()
        order = counts.index.to_numpy()[rng.permutation(len(counts))]
        sizes = counts[order].to_numpy() / counts.sum()
        starts = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])
        bounds = np.cumsum(fractions)[:-1]
        split_of = {g: SPLITS[int(np.searchsorted(bounds, start, side="right"))]
                    for g, start in zip(order, starts)}
        df.loc[sub.index, "split"] = groups.map(split_of).to_numpy()
    return df


def _cache_key(shas: list[str], spec: pp.PreprocessingSpec) -> str:
    h = hashlib.sha256(spec.key().encode())
    for s in shas:
        h.update(s.encode())
    return h.hexdigest()[:24]


def _file_sha(paths: list[str]) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def load_pixels(paths: list[str], spec: pp.PreprocessingSpec, shas: list[str] | None = None,
                cache_dir: Path | None = PROCESSED_DIR, batch_size: int = 256) -> np.ndarray:
    """Decode and resize images in parallel (``tf.data`` map with AUTOTUNE, then prefetch).

    Args:
        paths: image files (JPEG/PNG/WebP).
        spec: the preprocessing spec (size and resize filter).
        shas: sha256 of each file (from the CSV) for the cache key; computed when ``None``.
        cache_dir: where the uint8 cache lives; ``None`` disables caching.
    Returns:
        uint8 array ``(len(paths), spec.height, spec.width, 3)``.
    Raises:
        preprocessing.ImageDecodeError: an image cannot be decoded.
    """
    import tensorflow as tf

    if not paths:
        return np.zeros((0, *spec.input_shape), np.uint8)
    cache = None
    if cache_dir is not None:
        shas = shas if shas is not None and all(shas) else _file_sha(paths)
        cache = Path(cache_dir) / f"pixels-{_cache_key(shas, spec)}.npy"
        if cache.is_file():
            return np.load(cache)

    def decode(path):
        return pp.to_uint8(path.decode() if isinstance(path, bytes) else str(path), spec)

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths))
    ds = ds.map(lambda p: tf.ensure_shape(tf.numpy_function(decode, [p], tf.uint8), spec.input_shape),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    out = np.concatenate([b.numpy() for b in ds], axis=0)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, cache)
    return out
