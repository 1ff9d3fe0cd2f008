"""Contact sheet: a grid of random images of a dataset with their labels (for eyeballing renders)."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dataset.schema import METADATA_FILE


def contact_sheet(data: str | Path, out: str | Path, n: int = 24, cols: int = 6, tile: int = 256, seed: int = 0) -> Path:
    """Write a PNG grid of ``n`` random images of the dataset at ``data`` (tile px squares).

    Each tile is captioned ``<icao_type> <airline> [<split>]``. The PNG is written atomically.

    Raises:
        FileNotFoundError: ``data`` has no metadata.csv.
        ValueError: the dataset is empty or ``n`` < 1.
    """
    data = Path(data)
    csv_path = data / METADATA_FILE
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or n < 1:
        raise ValueError(f"nothing to show: {len(rows)} rows, n={n}")
    rng = np.random.default_rng(seed)
    pick = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    n_rows = (len(pick) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, n_rows * tile), (0, 0, 0))
    for j, r in enumerate(pick):
        with Image.open(data / r["image_path"]) as im:
            t = im.convert("RGB").resize((tile, tile))
        d = ImageDraw.Draw(t)
        caption = f"{r['icao_type']} {r['airline']} [{r['split']}]"
        d.rectangle((0, 0, tile, 14), fill=(0, 0, 0))
        d.text((3, 1), caption[:48], fill=(255, 255, 0))
        sheet.paste(t, ((j % cols) * tile, (j // cols) * tile))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        sheet.save(tmp, format="PNG")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
