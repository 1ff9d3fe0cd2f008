"""Tiny real Keras models shared by test folders (tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np


def colour_stage1(size: int):
    """A stage 1 of the exported layout (``manufacturer_logits[… logits] → temperature →
    probabilities``, what :func:`model.confidence.feature_model` takes apart): GAP features (mean
    R, G, B) → logits 8 * (R - G) for Airbus, 8 * (G - R) for Boeing; input ``(size, size, 3)``."""
    import keras

    from model.training.calibration import calibrated

    images = keras.Input((size, size, 3), name="image")
    feats = keras.layers.GlobalAveragePooling2D()(images)
    dense = keras.layers.Dense(2, name="logits")
    inner = keras.Model(images, dense(feats), name="manufacturer_logits")
    dense.set_weights([np.array([[8, -8], [-8, 8], [0, 0]], np.float32), np.zeros(2, np.float32)])
    return calibrated(inner, 1.0, "manufacturer")
