"""Photo-like augmentation: randomly cropped, recoloured, blurred and re-compressed *views* of a
training photo, made with Pillow before the project's one resize (:mod:`model.preprocessing`).

The views imitate how the same airliner looks in other people's photos: framed tighter or looser
(random-resized crop, as in Szegedy et al. 2015, "Going deeper with convolutions", and torchvision's
``RandomResizedCrop``), mirrored, under other light and colour (brightness, contrast, saturation
jitter), slightly out of focus (Gaussian blur) and saved at another JPEG quality. They are made
once per (image, view index, seed) and cached like any pixels, so the fine-tuning on cached
feature maps (:mod:`model.joint`) sees them as extra training rows.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from . import preprocessing as pp
from .io import write_npy


@dataclass(frozen=True)
class PhotoAugment:
    """Ranges of the random view (each drawn uniformly).

    Attributes:
        area: fraction of the image area the crop keeps, (min, max) in (0, 1].
        ratio: crop aspect ratio (width / height) relative to the image's, log-uniform (min, max).
        flip: probability of a horizontal mirror.
        brightness, contrast, saturation: Pillow ``ImageEnhance`` factors (1 = unchanged).
        blur_p, blur_sigma: probability and sigma range (pixels of the output size) of a blur.
        jpeg_p, jpeg_quality: probability and quality range of a JPEG re-compression.
    """

    area: tuple[float, float] = (0.45, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.6, 1.4)
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 90)

    def key(self) -> str:
        """A short stable digest of the ranges (cache keys)."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


def random_view(img: Image.Image, spec: pp.PreprocessingSpec, rng: np.random.Generator,
                aug: PhotoAugment = PhotoAugment()) -> np.ndarray:
    """One random view of a decoded (and already ``crop_box``-cut) RGB image.

    Args:
        img: Pillow RGB image, any size.
        spec: the model's preprocessing spec (output size and resize filter).
        rng: the random generator (the view is a pure function of its state).
    Returns:
        uint8 ``(spec.height, spec.width, 3)``.
    """
    w, h = img.size
    for _ in range(10):  # torchvision's RandomResizedCrop rule: 10 tries, then the whole image
        area = rng.uniform(*aug.area) * w * h
        ratio = float(np.exp(rng.uniform(np.log(aug.ratio[0]), np.log(aug.ratio[1]))))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw, ch = w, h
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < aug.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(*aug.brightness))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(*aug.contrast))
    out = ImageEnhance.Color(out).enhance(rng.uniform(*aug.saturation))
    out = pp.resize(out, spec)
    if rng.random() < aug.blur_p:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*aug.blur_sigma)))
    if rng.random() < aug.jpeg_p:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1)))
        out = Image.open(buf)
        out.load()
    return np.asarray(out.convert("RGB"), np.uint8)


def view_seed(sha256: str, view: int, seed: int) -> int:
    """The generator seed of view ``view`` of the image with this sha256 (stable across runs)."""
    return int(hashlib.sha256(f"{sha256}|{view}|{seed}".encode()).hexdigest()[:15], 16)


def _one(args) -> np.ndarray:
    path, box, sha, view, seed, spec, aug = args
    img = pp.crop(pp.decode_image(path), box)
    return random_view(img, spec, np.random.default_rng(view_seed(sha, view, seed)), aug)


def make_views(paths: list[str], shas: list[str], crop_boxes: list[str], spec: pp.PreprocessingSpec,
               views: int, seed: int = 0, aug: PhotoAugment = PhotoAugment(),
               cache_dir: Path | None = Path("data/processed"), workers: int | None = None) -> np.ndarray:
    """``views`` random views of every image, view-major: rows ``v * len(paths) + i``.

    Args:
        paths, shas, crop_boxes: the images (sha256 keys the views and the cache).
        views: views per image (>= 0).
        cache_dir: where the uint8 result is cached (``None``: no cache).
        workers: decoding processes (default: the CPU count, at most 4).
    Returns:
        uint8 ``(views * len(paths), spec.height, spec.width, 3)``.
    Raises:
        preprocessing.ImageDecodeError, ValueError: an unreadable image or a bad crop box.
    """
    if views <= 0 or not paths:
        return np.zeros((0, *spec.input_shape), np.uint8)
    key = hashlib.sha256(f"{spec.key()}|{views}|{seed}|{aug.key()}|{'|'.join(shas)}|{'|'.join(crop_boxes)}"
                         .encode()).hexdigest()[:24]
    cache = Path(cache_dir) / f"views-{key}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    jobs = [(p, b, s, v, seed, spec, aug) for v in range(views) for p, s, b in zip(paths, shas, crop_boxes)]
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent has TensorFlow's thread pools, which do not survive a fork
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            out = np.stack(list(pool.map(_one, jobs, chunksize=32)))
    else:
        out = np.stack([_one(j) for j in jobs])
    if cache is not None:
        write_npy(cache, out)
    return out
