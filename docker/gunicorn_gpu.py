"""gunicorn settings for the GPU image: ``api.gunicorn_conf`` plus one worker per GPU.

``gunicorn -c /opt/planespotter/gunicorn_gpu.py "api:create_app()"`` (the GPU image's default,
through ``GUNICORN_CONF``). Each worker sees exactly one GPU: the master assigns a free GPU slot
to every worker it forks (``pre_fork``) and the worker sets ``CUDA_VISIBLE_DEVICES`` to that GPU
before the app, and so TensorFlow, loads (``post_fork``; ``preload_app`` is off). A replacement
worker takes the slot its predecessor freed. Memory growth is switched on by the image
(``TF_FORCE_GPU_ALLOW_GROWTH=true``).

GPUs: the ids in ``CUDA_VISIBLE_DEVICES`` when set (e.g. ``0,2``), else one per
``/dev/nvidia<N>`` device that the NVIDIA container runtime mounted; none → CPU, one worker.
Workers: ``WEB_CONCURRENCY`` when set, else the number of GPUs (at least 1); with more workers
than GPUs, slots wrap round (workers share GPUs).
"""

import glob
import os
import re

from api.gunicorn_conf import *  # noqa: F401,F403  (bind, threads, timeouts, logging, ...)
from api import gunicorn_conf as _base


def visible_gpus() -> list[str]:
    """GPU ids to spread the workers over (strings, as CUDA_VISIBLE_DEVICES takes them)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    return sorted((m.group(1) for p in glob.glob("/dev/nvidia*")
                   if (m := re.fullmatch(r"/dev/nvidia(\d+)", p))), key=int)


GPUS = visible_gpus()
workers = int(os.environ.get("WEB_CONCURRENCY") or max(1, len(GPUS)))


def pre_fork(server, worker):
    """Master, before the fork: give the new worker the lowest GPU slot no live worker holds."""
    if GPUS:
        held = [getattr(w, "gpu_slot", None) for w in server.WORKERS.values()]
        free = [s for s in range(len(GPUS)) if s not in held]
        worker.gpu_slot = free[0] if free else min(range(len(GPUS)), key=held.count)
    if hasattr(_base, "pre_fork"):
        _base.pre_fork(server, worker)


def post_fork(server, worker):
    """Worker, after the fork and before the app loads: see only the assigned GPU."""
    if GPUS:
        os.environ["CUDA_VISIBLE_DEVICES"] = GPUS[worker.gpu_slot]
        server.log.info("worker %s: CUDA_VISIBLE_DEVICES=%s", worker.pid, GPUS[worker.gpu_slot])
    if hasattr(_base, "post_fork"):
        _base.post_fork(server, worker)
