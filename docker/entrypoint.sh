#!/bin/sh
# Entrypoint of the planespotter images: one image serves, trains, evaluates and scores.
#   (no argument) | serve [GUNICORN_ARGS...]   the API under gunicorn (config $GUNICORN_CONF,
#                                               default python:api.gunicorn_conf; binds $PORT, 8000)
#   train|evaluate|score [ARGS...]              python -m model <command> ARGS (the pipeline CLI)
#   anything else                               run as given (python, sh, planespotter-model, ...)
set -eu
command="${1:-serve}"
[ $# -gt 0 ] && shift
case "$command" in
  serve)
    exec gunicorn -c "${GUNICORN_CONF:-python:api.gunicorn_conf}" "$@" "api:create_app()" ;;
  train|evaluate|score)
    exec python -m model "$command" "$@" ;;
  *)
    exec "$command" "$@" ;;
esac
