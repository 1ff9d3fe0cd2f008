"""gunicorn settings for the planespotter API (``gunicorn -c python:api.gunicorn_conf "api:create_app()"``).

Imported by the gunicorn master: it must not import TensorFlow or the app (models load in each
worker after the fork; ``preload_app`` stays off — with TF's thread pools a preloaded model
deadlocks every worker, ../shared/notes/stack.md). Every value can be overridden on the command
line or with ``GUNICORN_CMD_ARGS``.
"""

import os

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Model loading runs in a background thread, so the worker heartbeats while it loads; the timeout
# only has to cover the slowest request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
control_socket_disable = True
