"""Bottleneck features of frozen ImageNet backbones, cached on disk (TensorFlow-for-poets style).

The features of an image under a backbone depend only on the image bytes, the backbone (and its
weights) and the preprocessing, so they are cached under ``data/processed/features/`` in one
``.npy`` per (backbone, spec), keyed row by row by the image's sha256. Re-training a head reuses
every cached row; only new images go through the backbone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .. import backbones
from .. import preprocessing as pp
from ..io import write_npy

#: ``--backbone`` names that train heads on cached frozen features: one per registered backbone
#: (:func:`model.backbones.feature_names`: ``lite0``, ``lite2``, ``vgg16-frozen``).
FEATURE_BACKBONES: tuple[str, ...] = backbones.feature_names()
CACHE_DIR = Path("data/processed/features")
#: Where ``--fine-tune`` cuts EfficientNet-Lite0 by default (``backbones.get("lite0").default_cut``):
#: blocks 1-5 stay frozen (their output is cached, 14x14x112 at 224 px), blocks 6-7 and the head
#: conv are fine-tuned on the cached maps. Other backbones: :func:`default_cut`.
LITE0_CUT = "block5c_add"


def default_cut(name: str) -> str:
    """The cut ``--fine-tune`` uses for backbone ``name`` (Lite0 ``block5c_add``, Lite2
    ``block5d_add``, VGG16 ``block4_pool``). Raises ValueError for an unknown backbone."""
    return backbones.get(name).check_cut(None)


def backbone_model(name: str, spec: pp.PreprocessingSpec, weights: str | None = None, cut: str | None = None):
    """A frozen feature extractor: float32 ``(n, H, W, 3)`` in [0, 1] → float32 ``(n, d)``
    (or the feature map of layer ``cut``, e.g. ``(n, 14, 14, 112)`` for Lite0's :data:`LITE0_CUT`).

    Args:
        name: a registered backbone (:data:`FEATURE_BACKBONES` or a :func:`model.backbones.names`
            name): ``lite0`` (d = 1280), ``lite2`` (d = 1280), ``vgg16-frozen`` (d = 512).
        weights: ``None``/``"imagenet"`` (pretrained), ``"none"`` or a file
            (:meth:`model.backbones.Backbone.resolve_weights`).
        cut: one of the backbone's :attr:`~model.backbones.Backbone.cuts`, or ``None`` (pooled).

    Raises:
        ValueError: unknown backbone or cut; WeightsUnavailableError: weights missing offline.
    """
    import keras  # deferred: TensorFlow start-up

    bb = backbones.get(name)
    base = bb.build(spec.input_shape, weights) if cut is None else bb.build_lower(spec.input_shape, cut, weights)
    base.trainable = False
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, base(inputs, training=False), name=f"{name}_features")


def _cache_paths(name: str, spec: pp.PreprocessingSpec, weights_id: str, cut: str | None = None) -> tuple[Path, Path]:
    key = hashlib.sha256(f"{name}|{spec.key()}|{weights_id}|{cut or 'pooled'}".encode()).hexdigest()[:16]
    return CACHE_DIR / f"{name}-{key}.npy", CACHE_DIR / f"{name}-{key}.index.json"


def compute(name: str, pixels, df: pd.DataFrame, spec: pp.PreprocessingSpec,
            weights: str | None = None, batch_size: int = 64, stats: dict | None = None,
            cut: str | None = None, rows: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
    """Features of every row (or of ``rows``), from the cache where present.

    Rows missing from the cache go through the backbone (all of ``df``'s missing rows, whatever
    ``rows`` asks for, so the cache and the batches are the same either way) and are appended to
    the cache. The cache file is memory-mapped: only the rows asked for are read.

    Args:
        pixels: uint8 ``(n, H, W, 3)``, or a callable ``pixels(indices) -> uint8 (k, H, W, 3)``
            called once, only when some rows are missing (e.g. augmented views made on demand);
        df: the rows (column ``sha256``; computed when empty).
        stats: if given, receives ``{"hits": int, "misses": int, "seconds": float}``.
        cut: cache the feature map of this layer instead of the pooled output (float16 on disk).
        rows: int indices into ``df`` to return (default: all, in order).
        dtype: of the result: float32 (default), or float16 to keep cached maps at their stored
            precision (cast per batch at training time; the same values as float32).
    Returns:
        ``dtype`` ``(len(rows), d)`` (or ``(len(rows), h, w, c)`` with ``cut``).
    """
    shas = [s or hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for s, p in zip(df.get("sha256", pd.Series([""] * len(df))).tolist(), df["abs_path"])]
    npy, index_path = _cache_paths(name, spec, str(weights or "default"), cut)
    cached: dict[str, int] = json.loads(index_path.read_text()) if index_path.is_file() and npy.is_file() else {}
    missing = [i for i, s in enumerate(shas) if s not in cached]
    t = time.time()
    if missing:
        model = backbone_model(name, spec, weights, cut)
        source = pixels(np.asarray(missing)) if callable(pixels) else None
        new = None
        for s in tqdm(range(0, len(missing), batch_size), desc=f"{name} features", unit="batch"):
            batch = source[s:s + batch_size] if source is not None else pixels[missing[s:s + batch_size]]
            out = np.asarray(model.predict_on_batch(pp.scale(batch, spec)), np.float16 if cut else np.float32)
            if new is None:
                new = np.empty((len(missing), *out.shape[1:]), out.dtype)
            new[s:s + len(out)] = out
        del source
        base = _append_npy(npy, new) if cached else 0
        if not cached:
            write_npy(npy, new)
        for k, i in enumerate(missing):
            cached[shas[i]] = base + k
        tmp_index = index_path.with_suffix(f".tmp{os.getpid()}")
        tmp_index.write_text(json.dumps(cached))
        os.replace(tmp_index, index_path)
    if stats is not None:
        stats.update(hits=len(shas) - len(missing), misses=len(missing), seconds=time.time() - t)
    wanted = np.arange(len(shas)) if rows is None else np.asarray(rows)
    return _read_rows(npy, [cached[shas[i]] for i in wanted]).astype(dtype, copy=False)


def _header(f) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, data offset)`` of the open ``.npy`` file ``f`` (C order)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError(f"{f.name}: Fortran-ordered cache")
    return shape, dtype, f.tell()


def _read_rows(npy: Path, index: list[int]) -> np.ndarray:
    """Rows ``index`` of the cache ``npy``, read row by row from the file into one array (no
    memory map: only the result is held)."""
    with open(npy, "rb") as f:
        shape, dtype, offset = _header(f)
        out = np.empty((len(index), *shape[1:]), dtype)
        row = out[0].nbytes if len(out) else 0
        for k, r in enumerate(index):
            f.seek(offset + r * row)
            f.readinto(memoryview(out[k]).cast("B"))
    return out


def _append_npy(npy: Path, new: np.ndarray) -> int:
    """Append ``new``'s rows to the cache ``npy`` (atomically: a new file beside it, the old rows
    copied file to file, then ``os.replace``) without reading the old file into memory.
    Returns the index of ``new``'s first row."""
    tmp = npy.with_suffix(f".tmp{os.getpid()}.npy")
    with open(npy, "rb") as old, open(tmp, "wb") as out:
        shape, dtype, _ = _header(old)
        np.lib.format.write_array_header_2_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                   "fortran_order": False,
                                                   "shape": (shape[0] + len(new), *shape[1:])})
        shutil.copyfileobj(old, out, 16 << 20)
        np.ascontiguousarray(new, dtype).tofile(out)
    os.replace(tmp, npy)
    return shape[0]


def pooled_from_cut(maps: np.ndarray, spec: pp.PreprocessingSpec, weights: str | None = None,
                    batch_size: int = 128, *, backbone: str = "lite0", cut: str | None = None) -> np.ndarray:
    """Pooled features ``(n, d)`` from cached feature maps of layer ``cut`` (default: the
    backbone's :func:`default_cut`), by running the frozen upper part (cheap at 7x7); equal to
    the backbone's pooled features of the images.

    Args:
        maps: float ``(n, h, w, c)``, as :func:`compute` returns them with ``cut``.
    Raises:
        ValueError: unknown backbone or cut.
    """
    bb = backbones.get(backbone)
    upper = bb.build_upper(spec.input_shape, bb.check_cut(cut), weights)
    return np.concatenate([np.asarray(upper.predict_on_batch(maps[s:s + batch_size]), np.float32)
                           for s in range(0, len(maps), batch_size)])
