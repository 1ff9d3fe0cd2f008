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
import time
from pathlib import Path

import numpy as np
import pandas as pd

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
    import keras

    bb = backbones.get(name)
    base = bb.build(spec.input_shape, weights) if cut is None else bb.build_lower(spec.input_shape, cut, weights)
    base.trainable = False
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, base(inputs, training=False), name=f"{name}_features")


def _cache_paths(name: str, spec: pp.PreprocessingSpec, weights_id: str, cut: str | None = None) -> tuple[Path, Path]:
    key = hashlib.sha256(f"{name}|{spec.key()}|{weights_id}|{cut or 'pooled'}".encode()).hexdigest()[:16]
    return CACHE_DIR / f"{name}-{key}.npy", CACHE_DIR / f"{name}-{key}.index.json"


def compute(name: str, pixels: np.ndarray, df: pd.DataFrame, spec: pp.PreprocessingSpec,
            weights: str | None = None, batch_size: int = 64, stats: dict | None = None,
            cut: str | None = None) -> np.ndarray:
    """Features of every row, from the cache where present.

    Args:
        pixels: uint8 ``(n, H, W, 3)``; df: the rows (column ``sha256``; computed when empty).
        stats: if given, receives ``{"hits": int, "misses": int, "seconds": float}``.
        cut: cache the feature map of this layer instead of the pooled output (float16 on disk).
    Returns:
        float32 ``(n, d)`` (or ``(n, h, w, c)`` with ``cut``).
    """
    from tqdm import tqdm

    shas = [s or hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for s, p in zip(df.get("sha256", pd.Series([""] * len(df))).tolist(), df["abs_path"])]
    npy, index_path = _cache_paths(name, spec, str(weights or "default"), cut)
    cached: dict[str, int] = json.loads(index_path.read_text()) if index_path.is_file() and npy.is_file() else {}
    store = np.load(npy) if cached else None
    missing = [i for i, s in enumerate(shas) if s not in cached]
    t = time.time()
    new = None
    if missing:
        model = backbone_model(name, spec, weights, cut)
        parts = []
        for s in tqdm(range(0, len(missing), batch_size), desc=f"{name} features", unit="batch"):
            rows = missing[s:s + batch_size]
            parts.append(np.asarray(model.predict_on_batch(pp.scale(pixels[rows], spec)),
                                    np.float16 if cut else np.float32))
        new = np.concatenate(parts)
        base = 0 if store is None else len(store)
        store = new if store is None else np.concatenate([store, new])
        for k, i in enumerate(missing):
            cached[shas[i]] = base + k
        write_npy(npy, store)
        tmp_index = index_path.with_suffix(f".tmp{os.getpid()}")
        tmp_index.write_text(json.dumps(cached))
        os.replace(tmp_index, index_path)
    if stats is not None:
        stats.update(hits=len(shas) - len(missing), misses=len(missing), seconds=time.time() - t)
    return store[[cached[s] for s in shas]].astype(np.float32)


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
