"""The compact CNN: a small network trained whole, from scratch (``--backbone compact``).

It has no pretrained weights, so it is not a registry entry (:mod:`model.backbones` lists the
pretrained feature extractors); training builds it per stage (:mod:`model.training.fit`). It
takes float32 images preprocessed by :mod:`model.preprocessing` (RGB in [0, 1], ``(H, W, 3)``)
and outputs **logits**; calibration (:mod:`model.training.calibration`) appends a temperature
and the softmax before export.
"""

from __future__ import annotations

import keras
from keras import layers


def build_compact_cnn(input_shape: tuple[int, int, int], n_classes: int, width: int = 32,
                      dropout: float = 0.3, name: str = "compact_cnn") -> keras.Model:
    """A small CNN that trains from scratch on 2 CPU cores (after keras-io "image classification
    from scratch": strided stem, separable-conv residual blocks, global average pooling).

    Args:
        input_shape: ``(H, W, 3)``; H and W multiples of 16 are best.
        n_classes: number of output logits (>= 2).
        width: channels of the stem; blocks use 2x, 4x, 8x.
    Returns:
        A functional ``keras.Model`` mapping float32 ``(batch, H, W, 3)`` in [0, 1] to float32
        logits ``(batch, n_classes)``. About 0.35 M parameters at ``width=32``.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    previous = x
    for i, filters in enumerate((width * 2, width * 4, width * 8, width * 8)):
        p = f"block{i + 1}"
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{p}_sep1")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{p}_bn1")(x)
        x = layers.Activation("relu", name=f"{p}_relu1")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{p}_sep2")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{p}_bn2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{p}_pool")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", name=f"{p}_shortcut")(previous)
        x = layers.add([x, residual], name=f"{p}_add")
        x = layers.Activation("relu", name=f"{p}_relu2")(x)
        previous = x
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
