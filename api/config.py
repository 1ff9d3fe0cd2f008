"""Server settings, read from the environment (12-factor), as a Flask config object."""

from __future__ import annotations

import os


def _env(name: str, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return type(default)(value) if not isinstance(default, bool) else value.lower() in ("1", "true", "yes")


class Config:
    """Defaults; every key can be set by the environment variable ``PLANESPOTTER_<KEY>``.

    MODEL_DIR: model version folder (``models/latest`` follows the newest complete version).
    MODEL_NAME: the model's name in the OIP v2 (``/v2/models/{name}``) and TF Serving
        (``/v1/models/{name}``) routes.
    IMAGE_ROOT: folder that ``GET /predict?path=`` may read from (relative paths only).
    DEFAULT_IMAGE: image classified by ``GET /names`` (relative to IMAGE_ROOT); empty (the
        default): the model version's own reference image (``reference.png``, see model/io.py).
    THRESHOLD: stage-1 routing threshold in [0, 1].
    MAX_CONTENT_LENGTH: request body limit in bytes (413 ``request_entity_too_large`` above it;
        Flask's own setting). 32 MiB: a 24 MP camera JPEG (3-15 MB) fits raw, in a multipart
        form or base64-encoded in JSON (+33 %); a reverse proxy in front must allow as much
        (README, "Upload limits").
    MAX_IMAGES_PER_REQUEST: most images in one request (413 above it).
    MAX_BATCH_SIZE / MAX_BATCH_WAIT_MS: dynamic micro-batching within a worker (images per forward
        pass; milliseconds the batcher may wait after the first queued image, only while other
        classification requests in the worker have not submitted their images yet, or while a
        saturated worker's batch is smaller than the number of requests it held at once in the
        last 2 s: :meth:`api.engine.Engine._collect`; a lone request never waits). 8 images: the
        best p99 at concurrency 8 in ``make bench-sweep`` against 16 and 32. 40 ms: at
        concurrency 8 the answered clients' next requests arrive 20-40 ms after their answers, so
        10 ms left batches of 4 (two alternating groups; 2 CPU cores, 2026-12-07, docs/performance.md).
    READY_WAIT_S: how long a classification request that arrives while the models are still
        loading (a fresh or replacement worker) waits for them before answering 503.
    WARMUP: run the models once before reporting ready.
    TOP_K: default number of (manufacturer, type) pairs listed per image.
    URL_FETCH: enable ``GET /predict?url=`` (off by default).
    URL_ALLOW_HOSTS: comma-separated host allow-list for ``?url=`` (``example.org`` matches that
        host only, ``.example.org`` also its subdomains). Empty: every URL is refused.
    URL_MAX_BYTES / URL_TIMEOUT_S: size (bytes) and total time (seconds) limits of one fetch
        (32 MiB: the same camera files as an upload).
    URL_ALLOW_NETWORKS: comma-separated CIDR networks exempt from the SSRF guard (e.g. an internal
        image store at ``10.1.2.0/24``; the tests use ``127.0.0.2/32``). Empty by default: every
        loopback, private, link-local or otherwise non-public address is refused.
    """

    MODEL_DIR = "models/latest"
    MODEL_NAME = "planespotter"
    IMAGE_ROOT = "."
    DEFAULT_IMAGE = ""
    THRESHOLD = 0.6
    MAX_CONTENT_LENGTH = 32 * 1024 * 1024
    MAX_IMAGES_PER_REQUEST = 64
    MAX_BATCH_SIZE = 8
    MAX_BATCH_WAIT_MS = 40.0
    READY_WAIT_S = 60.0
    WARMUP = True
    TOP_K = 3
    URL_FETCH = False
    URL_ALLOW_HOSTS = ""
    URL_MAX_BYTES = 32 * 1024 * 1024
    URL_TIMEOUT_S = 5.0
    URL_ALLOW_NETWORKS = ""

    @classmethod
    def from_env(cls) -> dict:
        """All settings, each overridden by ``PLANESPOTTER_<KEY>`` when set."""
        return {k: _env(f"PLANESPOTTER_{k}", getattr(cls, k)) for k in dir(cls) if k.isupper()}
