#!/usr/bin/env bash
# docker/base.sh — build a local stand-in for `python:3.11-slim` (make docker-base).
#
# No container registry is reachable on CI here, only Debian and PyPI. This builds
#   localhost/debian:bookworm   debootstrap --variant=minbase + `docker import`
#   python:3.11-slim            docker/base.Dockerfile on top (Debian's python3 3.11)
# so that docker/Dockerfile (FROM python:3.11-slim) builds unchanged here and with the official
# image elsewhere. Idempotent: an existing python:3.11-slim is kept unless FORCE=1.
# Needs: root, debootstrap, a running engine (docker/engine.sh start; DOCKER_HOST/DOCKER set).
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), SUITE (default bookworm), FORCE.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER="${DOCKER:-docker}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${SUITE:-bookworm}"
BASE_TAG="localhost/debian:$SUITE"
PY_TAG="python:3.11-slim"

if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$PY_TAG" >/dev/null 2>&1; then
  echo "base.sh: $PY_TAG already present (FORCE=1 rebuilds)" >&2
  exit 0
fi

if [ "${FORCE:-0}" = 1 ] || ! "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
  rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/planespotter-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  echo "base.sh: debootstrap $SUITE (minbase) from $MIRROR" >&2
  if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2
    exit 1
  fi
  rm -f "$rootfs.log"
  cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SRC
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  echo "base.sh: docker import -> $BASE_TAG" >&2
  tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

echo "base.sh: building $PY_TAG (stand-in)" >&2
"$DOCKER" build -f "$HERE/base.Dockerfile" -t "$PY_TAG" "$HERE" >&2
"$DOCKER" image ls "$PY_TAG" >&2
