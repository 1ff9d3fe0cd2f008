"""Model builders: the compact CNN, VGG16 backbones, the R original's recipe, augmentation.

Every classifier built here takes float32 images preprocessed by :mod:`model.preprocessing`
(RGB, values in [0, 1], shape ``(H, W, 3)``) and outputs **logits** (no softmax); calibration
(:mod:`model.calibration`) appends a temperature and the softmax before export. The one exception
is :func:`build_r_original`, which is the R model as it was (a sigmoid unit).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

# The VGG16 constants live with its backbone (model/backbones/vgg16.py); re-exported here.
from .backbones.base import WeightsUnavailableError  # noqa: F401 - one error class for every backbone
from .backbones.vgg16 import (  # noqa: F401
    VGG16_MEAN_BGR,
    VGG16_NOTOP_FILE,
    VGG16_NOTOP_MD5,
    VGG16_NOTOP_URL,
    VGG16_WEIGHTS_ENV,
)

#: Networks that train whole on images here (the compact CNN from scratch, VGG16 fine-tuning);
#: frozen-feature backbones are in the registry :mod:`model.backbones`.
BACKBONES = ("compact", "vgg16")


def augmentation(extra: bool = True, grayscale: bool = False, seed: int | None = None) -> keras.Sequential:
    """Training-time augmentation as Keras preprocessing layers (applied in the tf.data graph only).

    The first group reproduces the R original's ``image_data_generator``: rotation 40 degrees,
    width/height shift 0.2, shear 0.2, zoom 0.2, horizontal flip, ``fill_mode = "nearest"``.
    ``extra`` adds what the R recipe lacked: random crops (zoom-in), contrast/brightness jitter,
    Gaussian blur and Gaussian noise. ``grayscale`` randomly desaturates 20 % of images.

    Input and output: float32 ``(batch, H, W, 3)`` in [0, 1]; JPEG re-compression is applied
    separately on uint8 pixels (:func:`jpeg_recompress`).
    """
    aug = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(40 / 360, fill_mode="nearest", seed=seed),
        layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed),
        layers.RandomShear(x_factor=0.2, y_factor=0.2, fill_mode="nearest", seed=seed),
        layers.RandomZoom(0.2, fill_mode="nearest", seed=seed),
    ]
    if extra:
        aug += [
            layers.RandomContrast(0.3, seed=seed),
            layers.RandomBrightness(0.2, value_range=(0.0, 1.0), seed=seed),
            layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0.0, 1.0), seed=seed),
            layers.GaussianNoise(0.03, seed=seed),
        ]
    if grayscale:
        aug.append(layers.RandomGrayscale(factor=0.2, seed=seed))
    return keras.Sequential(aug, name="augmentation")


def jpeg_recompress(images_uint8, min_quality: int = 40, max_quality: int = 95, seed: int = 0):
    """Random JPEG re-compression of a uint8 ``(batch, H, W, 3)`` tensor (``tf.image``).

    Returns a uint8 tensor of the same shape. Quality is drawn per image from
    ``[min_quality, max_quality]``.
    """
    import tensorflow as tf

    def one(img):
        return tf.image.random_jpeg_quality(img, min_quality, max_quality, seed=seed)

    return tf.map_fn(one, images_uint8, fn_output_signature=tf.uint8)


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


def resolve_vgg16_weights(weights: str | None) -> str | None:
    """Decide which VGG16 weights to load.

    Args:
        weights: ``None`` (random init), ``"imagenet"`` (Keras' download, or the local file named
            by ``$PLANESPOTTER_VGG16_WEIGHTS`` when set), or a path to a no-top ``.h5`` file.
    Returns:
        What to pass as ``keras.applications.VGG16(weights=...)``.
    Raises:
        WeightsUnavailableError: ``"imagenet"`` asked for, no local file set, and the download
            fails (no internet): the message says how to proceed.
    """
    if weights is None or weights == "none":
        return None
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise WeightsUnavailableError(f"VGG16 weights file not found: {weights}")
        return str(weights)
    local = os.environ.get(VGG16_WEIGHTS_ENV)
    if local:
        return resolve_vgg16_weights(local)
    try:
        keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models", file_hash=VGG16_NOTOP_MD5)
    except Exception as e:  # noqa: BLE001 - any download failure means "offline"
        raise WeightsUnavailableError(
            "ImageNet VGG16 weights could not be downloaded "
            f"({type(e).__name__}: {str(e)[:120]}). Offline, either put "
            f"{VGG16_NOTOP_FILE} on this machine and set {VGG16_WEIGHTS_ENV}=/path/to/it, "
            "train from scratch with --weights none, or use --backbone compact, lite0 or lite2."
        ) from None
    return "imagenet"


def vgg16_input_adapter(name: str = "vgg16_preprocess") -> layers.Conv2D:
    """A frozen 1x1 convolution that maps RGB in [0, 1] to VGG16's caffe-style input
    (BGR, 0-255, ImageNet mean subtracted; keras.applications.vgg16.preprocess_input)."""
    conv = layers.Conv2D(3, 1, name=name, trainable=False)
    conv.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_c in range(3):
        kernel[0, 0, 2 - out_c, out_c] = 255.0
    conv.set_weights([kernel, -np.asarray(VGG16_MEAN_BGR, dtype=np.float32)])
    return conv


def build_vgg16_classifier(input_shape: tuple[int, int, int], n_classes: int, weights: str | None = None,
                           trainable_from: str | None = "block5_conv1", name: str = "vgg16") -> keras.Model:
    """VGG16 backbone + global-average-pooled head for the cascade.

    Args:
        weights: see :func:`resolve_vgg16_weights`.
        trainable_from: first trainable layer name; earlier layers are frozen (``None`` freezes
            the whole backbone, e.g. for bottleneck training).
    Returns:
        ``keras.Model``: float32 ``(batch, H, W, 3)`` in [0, 1] → logits ``(batch, n_classes)``.
    """
    base = keras.applications.VGG16(include_top=False, weights=resolve_vgg16_weights(weights),
                                    input_shape=input_shape)
    _freeze_before(base, trainable_from)
    inputs = keras.Input(shape=input_shape, name="image")
    x = vgg16_input_adapter()(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def _freeze_before(base: keras.Model, first_trainable: str | None) -> None:
    trainable = False
    for layer in base.layers:
        if first_trainable is not None and layer.name == first_trainable:
            trainable = True
        layer.trainable = trainable


def build_r_original(weights: str | None = None) -> keras.Model:
    """The R original's model, layer for layer (R keras ``application_vgg16`` fine-tuning).

    ``application_vgg16(include_top = FALSE, input_shape = c(150, 150, 3))`` → Flatten →
    Dense(256, relu) → Dense(1, sigmoid); block1 and block2 frozen, ``block3_conv1`` onwards
    trainable. Its R ``summary()``: total params 16,812,353, trainable 16,552,193,
    non-trainable 260,160. Input: float32 ``(batch, 150, 150, 3)`` rescaled by 1/255 (R did not
    apply VGG's caffe preprocessing, and neither does this). Output: P(Boeing) in [0, 1]
    (``flow_images_from_directory`` sorts class folders, so Airbus = 0, Boeing = 1).
    """
    base = keras.applications.VGG16(include_top=False, weights=resolve_vgg16_weights(weights),
                                    input_shape=(150, 150, 3))
    _freeze_before(base, "block3_conv1")
    model = keras.Sequential(
        [
            keras.Input(shape=(150, 150, 3), name="image"),
            base,
            layers.Flatten(name="flatten"),
            layers.Dense(256, activation="relu", name="dense"),
            layers.Dense(1, activation="sigmoid", name="dense_1"),
        ],
        name="r_original",
    )
    return model


def compile_r_original(model: keras.Model) -> keras.Model:
    """The R original's compile step: RMSprop(lr = 1e-5), binary cross-entropy, accuracy."""
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def r_original_augmentation(seed: int | None = None) -> keras.Sequential:
    """The R original's ``image_data_generator`` as Keras layers (no extras)."""
    return augmentation(extra=False, seed=seed)


#: The R recipe's training schedule (R: ``fit_generator(steps_per_epoch = 100, epochs = 100)``).
R_ORIGINAL_EPOCHS = 100
R_ORIGINAL_STEPS_PER_EPOCH = 100
R_ORIGINAL_BATCH_SIZE = 20
