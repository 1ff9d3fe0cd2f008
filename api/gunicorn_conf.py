"""gunicorn settings for the planespotter API (``gunicorn -c python:api.gunicorn_conf "api:create_app()"``).

Imported by the gunicorn master: it must not import TensorFlow or the app (models load in each
worker after the fork; ``preload_app`` stays off — with TF's thread pools a preloaded model
deadlocks every worker, ../shared/notes/stack.md). Every value can be overridden on the command
line or with ``GUNICORN_CMD_ARGS``.

Workers: ``WEB_CONCURRENCY`` (default 1: one process holds the models once and uses both cores
through TensorFlow's and Pillow's native threads; ``threads`` request threads feed its
micro-batcher). On GPU machines ``docker/gunicorn_gpu.py`` extends this file with one worker per
GPU; TensorFlow's GPU memory growth is switched on here (``TF_FORCE_GPU_ALLOW_GROWTH``).

Metrics: the master creates the prometheus_client multiprocess directory before forking
(``PROMETHEUS_MULTIPROC_DIR``, a fresh folder on /dev/shm unless set) and marks each dead worker
(``child_exit``), so ``/metrics`` from any worker reports all of them (see :mod:`api.metrics`).
"""

import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Model loading runs in a background thread, so the worker heartbeats while it loads; the timeout
# only has to cover the slowest request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# Recycle a worker after this many requests (jittered so several workers do not restart together);
# a replacement loads the models in the background and holds requests until ready (READY_WAIT_S).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "2000"))
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
control_socket_disable = True


_created_metrics_dir = None


def on_starting(server):
    """Master, once: set up a clean prometheus_client multiprocess directory for the workers."""
    global _created_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):  # samples of a previous run would be summed in
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        path = _created_metrics_dir = tempfile.mkdtemp(prefix="planespotter-metrics-", dir=parent)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    server.log.info("prometheus multiprocess dir: %s", path)


def post_fork(server, worker):
    """Worker, before the app (and TensorFlow) loads: GPU memory growth on (no effect on CPU)."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def child_exit(server, worker):
    """Master: a worker exited (normally, killed, or recycled); drop its live gauges."""
    # deferred: prometheus_client fixes its value class on import, after on_starting's PROMETHEUS_MULTIPROC_DIR
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def on_exit(server):
    """Master, at shutdown: remove the metrics directory this config created."""
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
