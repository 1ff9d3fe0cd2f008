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
    IMAGE_ROOT: folder that ``GET /predict?path=`` may read from (relative paths only).
    DEFAULT_IMAGE: image classified by ``GET /names`` (relative to IMAGE_ROOT).
    THRESHOLD: stage-1 routing threshold in [0, 1].
    MAX_CONTENT_LENGTH: request body limit in bytes (413 above it).
    MAX_BATCH_SIZE / MAX_BATCH_WAIT_MS: dynamic micro-batching within a worker.
    WARMUP: run the models once before reporting ready.
    """

    MODEL_DIR = "models/latest"
    IMAGE_ROOT = "."
    DEFAULT_IMAGE = ""
    THRESHOLD = 0.6
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024
    MAX_IMAGES_PER_REQUEST = 64
    MAX_BATCH_SIZE = 16
    MAX_BATCH_WAIT_MS = 5.0
    WARMUP = True
    TOP_K = 3

    @classmethod
    def from_env(cls) -> dict:
        """All settings, each overridden by ``PLANESPOTTER_<KEY>`` when set."""
        return {k: _env(f"PLANESPOTTER_{k}", getattr(cls, k)) for k in dir(cls) if k.isupper()}
