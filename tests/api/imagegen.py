"""Test images built in code, shared by tests/api (imported by conftest and test files)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def pattern(w: int = 60, h: int = 40, seed: int = 0) -> np.ndarray:
    """A deterministic asymmetric RGB test pattern, uint8 ``(h, w, 3)`` (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx * yy) % 256], -1)
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """``img`` encoded in Pillow format ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()
