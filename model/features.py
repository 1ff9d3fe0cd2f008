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

from . import backbones
from . import preprocessing as pp
from .io import write_npy
from .weighting import class_weights

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


def build_head(n_features: int, n_classes: int, dropout: float = 0.3, hidden: int = 256, name: str = "head"):
    """Dropout → Dense(hidden, relu) → Dropout → Dense(n_classes) logits over ``(n, n_features)``."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(n_features,), name="features")
    x = layers.Dropout(dropout)(inputs)
    x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name=name)


def fit_head(name: str, n_classes: int, f_tr, y_tr, f_va, y_va, cfg):
    """Train a head on cached features; early stopping on validation loss. Returns (head, history)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    head = build_head(f_tr.shape[1], n_classes, name=f"{name}_head")
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    hist = head.fit(f_tr, y_tr, validation_data=(f_va, y_va), epochs=max(cfg.epochs, 60), batch_size=64,
                    class_weight=class_weights(y_tr, n_classes), verbose=0,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=8,
                                                             restore_best_weights=True)])
    return head, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def full_model(backbone: str, head, spec: pp.PreprocessingSpec, weights: str | None = None, name: str = "model"):
    """Backbone + head as one Keras model: float32 images in [0, 1] → logits."""
    import keras

    features = backbone_model(backbone, spec, weights)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, head(features(inputs)), name=name)


def fit_upper(name: str, n_classes: int, f_tr, y_tr, f_va, y_va, cfg, spec: pp.PreprocessingSpec,
              cut: str | None = None):
    """Fine-tune a backbone's upper part (after ``cut``) + a head on cached feature maps.

    The backbone is ``cfg.backbone`` (any registered one); ``cut`` defaults to its
    :func:`default_cut` (Lite0: blocks 6-7 and the head conv after ``block5c_add``). Phase 1
    trains the head with the upper part frozen (Adam 1e-3); phase 2 unfreezes it
    (BatchNormalization stays in inference mode) at Adam 1e-4, early stopping on validation loss.

    Args:
        f_tr, f_va: float feature maps ``(n, h, w, c)`` of layer ``cut``; y_tr, y_va: int labels.
        cfg: a :class:`model.train.TrainConfig` (``backbone``, ``weights``, ``seed``, ``epochs``,
            ``verbose``).
    Returns:
        ``(model over feature maps → logits (n, n_classes), history dict)``.
    Raises:
        ValueError: unknown backbone or cut.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(cfg.seed)
    bb = backbones.get(cfg.backbone)
    upper = bb.build_upper(spec.input_shape, bb.check_cut(cut), cfg.weights)
    inputs = keras.Input(shape=f_tr.shape[1:], name="features")
    x = layers.RandomFlip("horizontal", seed=cfg.seed)(inputs)
    x = upper(x, training=False)
    x = layers.Dropout(0.3)(x)
    model = keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name=f"{name}_upper")
    history: dict = {}
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    for phase, (lr, epochs, trainable) in enumerate(((1e-3, 4, False), (1e-4, cfg.epochs, True))):
        upper.trainable = trainable
        for layer in upper.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        hist = model.fit(f_tr, y_tr, validation_data=(f_va, y_va), epochs=epochs, batch_size=32,
                         class_weight=class_weights(y_tr, n_classes), verbose=cfg.verbose,
                         callbacks=[stop] if phase else [])
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    return model, history


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


def full_model_cut(head, spec: pp.PreprocessingSpec, weights: str | None = None, name: str = "model", *,
                   backbone: str = "lite0", cut: str | None = None):
    """The frozen lower part of ``backbone`` up to ``cut`` (default :func:`default_cut`) + the
    fine-tuned upper part/head from :func:`fit_upper`: float32 images in [0, 1] → logits."""
    import keras

    lower = backbone_model(backbone, spec, weights, cut or default_cut(backbone))
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, head(lower(inputs)), name=name)
