"""Tiny generated photos for the ingest tests (imported by the test files through conftest)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int, w: int = 160, h: int = 110) -> Image.Image:
    """A smooth random RGB picture (8x6 random colours upscaled bicubically): pHashes of different
    seeds are far apart, while a resized or re-compressed copy keeps its pHash."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    return small.resize((w, h), Image.Resampling.BICUBIC)


def with_banner(img: Image.Image, px: int = 20) -> Image.Image:
    """``img`` with an FGVC-like ``px``-high credit banner added at the bottom (black, white text)."""
    out = Image.new("RGB", (img.width, img.height + px), "black")
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((3, img.height + 3), "Photo (c) Someone  AIRLINERS.NET", fill="white")
    return out


def save(img: Image.Image, path: Path, quality: int = 90) -> Path:
    """Save ``img`` as a JPEG at ``path`` (folders created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write a plain CSV (header + rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path
