"""Images without an aircraft, for the "not an aircraft" gate's evaluation and tests; nothing
is downloaded.

- :func:`bundled`: the sample photographs that ship inside scikit-image's wheel
  (``skimage/data/*.png|jpg``: astronaut, cat, coffee, coins, a rocket on its pad, text, …).
- :func:`generated`: synthetic images made from a seed: uniform noise, sky gradients, a page of
  text, a red ball on grass, flat colours, checkerboards, blurred noise, stripes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage
from PIL import Image, ImageDraw, ImageFilter

#: Kinds of :func:`generated` images, cycled in this order.
KINDS = ("noise", "sky", "text", "ball", "flat", "checker", "blur", "stripes")


def bundled() -> list[tuple[str, Image.Image]]:
    """scikit-image's bundled sample photos as ``(name, RGB image)``, sorted by name (about 25;
    grayscale ones converted to RGB)."""
    folder = Path(skimage.__file__).parent / "data"
    out = []
    for f in sorted(list(folder.glob("*.png")) + list(folder.glob("*.jpg"))):
        with Image.open(f) as im:
            out.append((f"skimage:{f.stem}", im.convert("RGB")))
    return out


def generated(n: int, seed: int = 0, size: tuple[int, int] = (640, 427)) -> list[tuple[str, Image.Image]]:
    """``n`` synthetic RGB images of ``size`` (width, height) pixels, cycling :data:`KINDS`;
    the same ``seed`` gives the same images. Returns ``(name, image)`` pairs."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        if kind == "noise":
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            img = Image.fromarray(a, "RGB")
        elif kind == "sky":
            top, bottom = rng.integers(60, 200, 3), rng.integers(150, 256, 3)
            t = np.linspace(0, 1, h)[:, None, None]
            a = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
            img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
        elif kind == "text":
            img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(220, 256, 3)))
            d = ImageDraw.Draw(img)
            words = ["runway", "the", "quick", "brown", "fox", "gate", "report", "page", "lorem", "ipsum"]
            for y in range(10, h - 10, 18):
                d.text((12, y), " ".join(rng.choice(words, 9)), fill=(20, 20, 20))
        elif kind == "ball":
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 1] = rng.integers(90, 160)
            a[..., 0] = 40
            a = np.clip(a.astype(int) + rng.integers(-25, 25, (h, w, 1)), 0, 255).astype(np.uint8)
            img = Image.fromarray(a, "RGB")
            r = int(rng.integers(h // 8, h // 3))
            cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
            ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(210, 20, 25))
        elif kind == "flat":
            img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        elif kind == "checker":
            k = int(rng.integers(8, 64))
            yy, xx = np.mgrid[0:h, 0:w]
            a = (((xx // k + yy // k) % 2) * 255).astype(np.uint8)
            img = Image.fromarray(np.stack([a] * 3, -1), "RGB")
        elif kind == "blur":
            a = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
            img = Image.fromarray(a, "RGB").resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
        else:  # stripes
            k = int(rng.integers(6, 40))
            a = ((np.arange(w) // k) % 2 * 200 + 30).astype(np.uint8)
            img = Image.fromarray(np.stack([np.tile(a, (h, 1))] * 3, -1), "RGB")
        out.append((f"generated:{kind}-{seed}-{i}", img))
    return out
