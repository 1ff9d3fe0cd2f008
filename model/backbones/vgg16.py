"""VGG16 (``keras.applications.VGG16``, no top, global average pooling): 224 px, 512 features.

ImageNet weights: Keras downloads ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` where
there is internet; offline, ``PLANESPOTTER_VGG16_WEIGHTS=/path/to/that.h5`` or ``--weights <path>``,
or ``--weights none`` (random initialisation). Training calls this frozen feature extractor
``vgg16-frozen``; ``--backbone vgg16`` and the R original's recipe fine-tune the whole network
(:func:`build_vgg16_classifier`, :func:`build_r_original`, both here; the R recipe's training is
:mod:`model.training.recipe_r`). Keras is imported inside the builders, so the registry lists this
backbone without loading it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import PRETRAINED, RANDOM, Backbone, WeightsSource, WeightsUnavailableError

#: Keras' published ImageNet no-top VGG16 weights file name (keras.applications.vgg16).
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Its URL and md5 (``keras.applications.vgg16.WEIGHTS_PATH_NO_TOP``, ``file_hash``).
VGG16_NOTOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILE
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
#: Setting that names a local VGG16 weights file for offline machines.
VGG16_WEIGHTS_ENV = "PLANESPOTTER_VGG16_WEIGHTS"
#: Caffe-style ImageNet channel means in BGR order, from keras.applications.imagenet_utils.
VGG16_MEAN_BGR = (103.939, 116.779, 123.68)


class VGG16(Backbone):
    """Keras' VGG16 with a frozen 1x1 input adapter ([0, 1] RGB → caffe BGR, mean subtracted,
    :func:`vgg16_input_adapter`). Cuts: ``block3_pool`` (28x28x256 at
    224 px) and ``block4_pool`` (14x14x512, the default: fine-tunes block 5)."""

    name = "vgg16"
    feature_name = "vgg16-frozen"
    default_image_size = 224
    feature_dim = 512
    description = "VGG16 (keras.applications), ImageNet via Keras download, 224 px, 512-d"
    weights_source = WeightsSource(
        origin="Keras download (keras.applications.vgg16, ported from VGG Oxford's release)",
        file=VGG16_NOTOP_FILE, md5=VGG16_NOTOP_MD5, url=VGG16_NOTOP_URL,
        licence="Creative Commons Attribution (VGG, University of Oxford)", converted=None, env_var=VGG16_WEIGHTS_ENV,
        make_target=None)
    cuts = ("block3_pool", "block4_pool")
    default_cut = "block4_pool"

    def resolve_weights(self, weights: str | None) -> str | None:
        """``"none"`` → ``None``; ``None``/``"imagenet"`` → ``$PLANESPOTTER_VGG16_WEIGHTS`` when
        set, else ``"imagenet"`` once Keras' download has worked; a path → that path
        (:func:`resolve_vgg16_weights`).

        Raises:
            WeightsUnavailableError: no file, and the download fails (offline).
        """
        if weights == RANDOM:
            return None
        return resolve_vgg16_weights("imagenet" if weights in PRETRAINED else weights)

    def _build(self, input_shape: tuple, resolved_weights: str | None, pooling: str | None):
        import keras  # deferred: Keras/TensorFlow start-up (~3 s)

        base = keras.applications.VGG16(include_top=False, weights=resolved_weights, input_shape=input_shape,
                                        pooling=pooling)
        inputs = keras.Input(shape=input_shape, name="image")
        x = vgg16_input_adapter()(inputs)
        # Flat, so that the cut layers are reachable by name; fresh copies of the layers (same
        # config and weights), because a layer called in two graphs reports the first graph's output.
        for layer in base.layers[1:]:
            copy = layer.__class__.from_config(layer.get_config())
            x = copy(x)
            copy.set_weights(layer.get_weights())
        return keras.Model(inputs, x, name="vgg16")


BACKBONE = VGG16()


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
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)

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


def vgg16_input_adapter(name: str = "vgg16_preprocess"):
    """A frozen 1x1 convolution that maps RGB in [0, 1] to VGG16's caffe-style input
    (BGR, 0-255, ImageNet mean subtracted; keras.applications.vgg16.preprocess_input).
    Returns a built ``keras.layers.Conv2D``."""
    from keras import layers  # deferred: Keras/TensorFlow start-up (~3 s)

    conv = layers.Conv2D(3, 1, name=name, trainable=False)
    conv.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_c in range(3):
        kernel[0, 0, 2 - out_c, out_c] = 255.0
    conv.set_weights([kernel, -np.asarray(VGG16_MEAN_BGR, dtype=np.float32)])
    return conv


def build_vgg16_classifier(input_shape: tuple[int, int, int], n_classes: int, weights: str | None = None,
                           trainable_from: str | None = "block5_conv1", name: str = "vgg16"):
    """VGG16 backbone + global-average-pooled head for the cascade.

    Args:
        weights: see :func:`resolve_vgg16_weights`.
        trainable_from: first trainable layer name; earlier layers are frozen (``None`` freezes
            the whole backbone, e.g. for bottleneck training).
    Returns:
        ``keras.Model``: float32 ``(batch, H, W, 3)`` in [0, 1] → logits ``(batch, n_classes)``.
    """
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)
    from keras import layers  # deferred: Keras/TensorFlow start-up (~3 s)

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


def _freeze_before(base, first_trainable: str | None) -> None:
    """Freeze the layers of ``base`` (a ``keras.Model``) before ``first_trainable``; all when ``None``."""
    trainable = False
    for layer in base.layers:
        if first_trainable is not None and layer.name == first_trainable:
            trainable = True
        layer.trainable = trainable


def build_r_original(weights: str | None = None):
    """The R original's model, layer for layer (R keras ``application_vgg16`` fine-tuning).

    ``application_vgg16(include_top = FALSE, input_shape = c(150, 150, 3))`` → Flatten →
    Dense(256, relu) → Dense(1, sigmoid); block1 and block2 frozen, ``block3_conv1`` onwards
    trainable. Its R ``summary()``: total params 16,812,353, trainable 16,552,193,
    non-trainable 260,160. Input: float32 ``(batch, 150, 150, 3)`` rescaled by 1/255 (R did not
    apply VGG's caffe preprocessing, and neither does this). Output: P(Boeing) in [0, 1]
    (``flow_images_from_directory`` sorts class folders, so Airbus = 0, Boeing = 1).
    """
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)
    from keras import layers  # deferred: Keras/TensorFlow start-up (~3 s)

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
