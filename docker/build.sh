#!/usr/bin/env bash
# docker/build.sh — build the planespotter images (used by mk/docker.mk and tests/docker).
#
#   docker/build.sh cpu              docker/Dockerfile      -> planespotter/api:<version>
#   docker/build.sh gpu              docker/Dockerfile.gpu  -> planespotter/api-gpu:<version>
#   docker/build.sh model DIR [IMG]  docker/Dockerfile.model: bake model version DIR (symlinks
#                                    resolved) into IMG (default planespotter/api:<version>)
#                                    -> IMG-model-<version folder name>
#   docker/build.sh r                docker/Dockerfile.r    -> planespotter/r-plumber:<version>
# The tag built is printed on stdout (build logs go to stderr); <version> is pyproject's.
#
# Env: DOCKER (CLI with BuildKit, from docker/engine.sh env; default docker),
#      CA_BUNDLE (PEM bundle passed as the BuildKit secret `ca`, trusted by pip during the build
#      only; default /etc/ssl/certs/ca-certificates.crt when it exists; empty = none),
#      DOCKER_BUILD_ARGS (extra `docker build` arguments, e.g. "--no-cache --progress=plain").
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${DOCKER:-docker}"
export DOCKER_BUILDKIT=1
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")"
if [ -z "${CA_BUNDLE+set}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
secret=()
if [ -n "${CA_BUNDLE:-}" ]; then
  [ -r "$CA_BUNDLE" ] || { echo "build.sh: CA_BUNDLE $CA_BUNDLE is not readable" >&2; exit 2; }
  secret=(--secret "id=ca,src=$CA_BUNDLE")
fi
# shellcheck disable=SC2206
extra=(${DOCKER_BUILD_ARGS:-})
# OCI source label: the git remote, when it is an https URL (the Dockerfiles have a default).
remote="$(git -C "$REPO" remote get-url origin 2>/dev/null || true)"
case "$remote" in https://*) extra+=(--build-arg "SOURCE_URL=${remote%.git}") ;; esac

build() {  # build TAG DOCKERFILE CONTEXT [ARGS...]
  local tag="$1" file="$2" context="$3"
  shift 3
  echo "build.sh: $tag from ${file#"$REPO"/} (context $context)" >&2
  local old
  old="$("$DOCKER" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  "$DOCKER" build -f "$file" -t "$tag" "$@" "${extra[@]}" "$context" >&2
  # The image this tag replaced, now untagged, would only fill the disk: remove it (kept while a
  # container or another tag still uses it; its layers stay in the build cache when shared).
  if [ -n "$old" ] && [ "$old" != "$("$DOCKER" image inspect --format '{{.Id}}' "$tag")" ] \
     && [ "$("$DOCKER" image inspect --format '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
    "$DOCKER" image rm "$old" >/dev/null 2>&1 || true
  fi
  echo "$tag"
}

case "${1:-}" in
  cpu) build "planespotter/api:$VERSION" "$REPO/docker/Dockerfile" "$REPO" \
         --build-arg "VERSION=$VERSION" "${secret[@]}" ;;
  gpu) build "planespotter/api-gpu:$VERSION" "$REPO/docker/Dockerfile.gpu" "$REPO" \
         --build-arg "VERSION=$VERSION" "${secret[@]}" ;;
  r) build "planespotter/r-plumber:$VERSION" "$REPO/docker/Dockerfile.r" "$REPO" \
       --build-arg "VERSION=$VERSION" --build-arg "IMAGE=planespotter/api:$VERSION" ;;
  model)
    [ -n "${2:-}" ] || { echo "usage: $0 model MODEL_DIR [IMAGE]" >&2; exit 2; }
    dir="$(readlink -f "$2")"
    if [ ! -f "$dir/labels.json" ]; then
      echo "build.sh: $2 is not a model version folder (no labels.json)" >&2
      exit 2
    fi
    image="${3:-planespotter/api:$VERSION}"
    name="$(basename "$dir")"
    build "$image-model-$name" "$REPO/docker/Dockerfile.model" "$dir" \
      --build-arg "IMAGE=$image" --build-arg "MODEL_VERSION=$name" ;;
  *) echo "usage: $0 cpu|gpu|r|model MODEL_DIR [IMAGE]" >&2; exit 2 ;;
esac
