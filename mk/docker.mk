# Container images (docker/): build, run, train and test them with a local Docker engine.
# docker/engine.sh starts Debian's docker.io by hand (no systemd, no registry; data root
# /var/tmp/planespotter-docker, kept between runs so warm builds stay warm);
# PLANESPOTTER_DOCKER_ENGINE=system uses the engine your docker CLI already talks to instead.
#
#   make docker-base        stand-in python:3.11-slim from Debian (debootstrap + docker import);
#                           skipped when a python:3.11-slim image exists (e.g. pulled)
#   make docker-build       CPU image planespotter/api:$(DOCKER_VERSION)
#                           MODEL_DIR=models/latest also bakes that model version in
#                           (-> planespotter/api:$(DOCKER_VERSION)-model-<version>)
#   make docker-build-gpu   GPU image planespotter/api-gpu:$(DOCKER_VERSION) (CUDA TensorFlow)
#   make docker-run         docker compose up (models/ mounted read-only) on 127.0.0.1:8000
#   make docker-stop        docker compose down
#   make docker-train       train in the image (TRAIN_ARGS; DOCKER_IMAGE=...api-gpu... and
#                           DOCKER_RUN_ARGS=--gpus all on a GPU node)
#   make docker-test        the container tests (pytest -m docker tests/docker)
#   make docker-engine-stop stop the engine docker/engine.sh started
#   make clean-docker       stop that engine and remove its data root: every image, container and
#                           build cache (PLANESPOTTER_DOCKER_ENGINE=system: the planespotter/* images)
# `make test` stops the engine it started at the end (KEEP_DOCKER=1 keeps it for quick reruns)
# and prints the data root's size.
# CA_BUNDLE=path: the PEM bundle pip trusts during builds only (BuildKit secret; default the
# host's /etc/ssl/certs/ca-certificates.crt; CA_BUNDLE= for none).

DOCKER_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml)
DOCKER_IMAGE ?= planespotter/api:$(DOCKER_VERSION)
DOCKER_RUN_ARGS ?=
DOCKER_TRAIN_DATA ?= --data /data/raw/synth
# Host folders docker-train mounts at /data (read-only), /models and /reports.
DOCKER_DATA ?= $(CURDIR)/data
DOCKER_MODELS ?= $(CURDIR)/models
DOCKER_REPORTS ?= $(CURDIR)/reports
MODEL_DIR ?=
COMPOSE_FILE_DOCKER := docker/compose.yaml
# Every recipe line that talks to the engine starts it first (idempotent, ~0.1 s when running).
DOCKER_ENV = engine_env=$$(docker/engine.sh start) && eval "$$engine_env"

.PHONY: docker-engine docker-engine-stop docker-base docker-build docker-build-gpu docker-build-r \
        docker-run docker-stop docker-train docker-test clean-docker

docker-engine:  ## start (or reuse) the local Docker engine; prints the DOCKER_HOST etc. to eval
	@docker/engine.sh start

docker-engine-stop:  ## stop the local Docker engine started by docker/engine.sh
	@docker/engine.sh stop

clean-docker:  ## remove the Docker images and the local engine's data root (stops the engine first)
	@docker/engine.sh clean

docker-base:  ## stand-in python:3.11-slim built from Debian (debootstrap + docker import)
	@$(DOCKER_ENV) && docker/base.sh

docker-build: docker-base  ## CPU image planespotter/api (MODEL_DIR=models/latest also bakes a model in)
	@$(DOCKER_ENV) && docker/build.sh cpu
	@if [ -n "$(MODEL_DIR)" ]; then $(DOCKER_ENV) && docker/build.sh model "$(MODEL_DIR)" "$(DOCKER_IMAGE)"; fi

docker-build-gpu: docker-base  ## GPU image planespotter/api-gpu (CUDA TensorFlow)
	@$(DOCKER_ENV) && docker/build.sh gpu
	@if [ -n "$(MODEL_DIR)" ]; then $(DOCKER_ENV) && docker/build.sh model "$(MODEL_DIR)" planespotter/api-gpu:$(DOCKER_VERSION); fi

docker-build-r: docker-build  ## R plumber reference server image planespotter/r-plumber
	@$(DOCKER_ENV) && docker/build.sh r

docker-run:  ## docker compose up: the CPU image with models/ mounted read-only on 127.0.0.1:8000
	@models=$${PLANESPOTTER_MODELS:-models}; test -e "$$models/latest" || { \
	  echo "docker-run: no $$models/latest: train a model first (make run) or set PLANESPOTTER_MODELS" >&2; exit 2; }
	@$(DOCKER_ENV) && PLANESPOTTER_IMAGE=$(DOCKER_IMAGE) $$DOCKER compose -f $(COMPOSE_FILE_DOCKER) up -d --wait api \
	  && echo "planespotter API on http://127.0.0.1:$${PLANESPOTTER_PORT:-8000} (make docker-stop to stop)"

docker-stop:  ## docker compose down
	@$(DOCKER_ENV) && $$DOCKER compose -f $(COMPOSE_FILE_DOCKER) down

# The pipeline in the serving image, as the invoking user (outputs owned by you).
docker-train:  ## train inside the image (DOCKER_TRAIN_DATA=--data /data/raw/..., TRAIN_ARGS=..., DOCKER_IMAGE=..., DOCKER_RUN_ARGS=--gpus all)
	@mkdir -p "$(DOCKER_MODELS)" "$(DOCKER_REPORTS)"
	@$(DOCKER_ENV) && $$DOCKER run --rm --user $$(id -u):$$(id -g) $(DOCKER_RUN_ARGS) \
	  -v "$(DOCKER_DATA):/data:ro" -v "$(DOCKER_MODELS):/models" -v "$(DOCKER_REPORTS):/reports" \
	  $(DOCKER_IMAGE) train $(DOCKER_TRAIN_DATA) --models-dir /models --reports-dir /reports $(TRAIN_ARGS)

docker-test: venv  ## the container tests (tests/docker: build, run, inspect the images)
	$(PY) -m pytest tests/docker -q
