"""Photo-like augmentation: randomly cropped, recoloured, blurred and re-compressed *views* of a
training photo, made with Pillow before the project's one resize (:mod:`model.preprocessing`).

The views imitate how the same airliner looks in other people's photos: framed tighter or looser
(random-resized crop, as in Szegedy et al. 2015, "Going deeper with convolutions", and torchvision's
``RandomResizedCrop``), mirrored, under other light and colour (brightness, contrast, saturation
jitter), slightly out of focus (Gaussian blur) and saved at another JPEG quality. They are made
once per (image, view index, seed) and cached like any pixels, so the fine-tuning on cached
feature maps (:mod:`model.training.joint`) sees them as extra training rows.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from .. import preprocessing as pp
from ..io import write_npy


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
        night_p: probability of low light with a dusk or night colour cast (brightness 0.25-0.6,
            gamma 1.2-2.0, channels scaled towards orange or blue).
        squash_p: probability of a squashed aspect (the crop's ratio drawn from 0.5-2.0 instead
            of ``ratio``), like web images forced to 224x224.
        zoom_out_p: probability of a small aircraft in a wide scene: the image shrunk to 35-70 %
            of its width and placed on a blurred, enlarged copy of itself.
        watermark_p: probability of a watermark (semi-transparent text across the image) or a
            photographer's credit strip (a dark band with text at the top or bottom).
    The four style fields default to 0 (off); :data:`STYLES` turns them on.
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
    night_p: float = 0.0
    squash_p: float = 0.0
    zoom_out_p: float = 0.0
    watermark_p: float = 0.0

    def key(self) -> str:
        """A short stable digest of the ranges (cache keys)."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


#: Photo-like views with the styles that fail on photos from elsewhere (night/dusk, squashed,
#: small aircraft in a wide scene, watermarks and credit strips): ``--photo-views N --view-styles``.
STYLES = PhotoAugment(night_p=0.2, squash_p=0.2, zoom_out_p=0.2, watermark_p=0.2)


def _zoom_out(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    s = rng.uniform(0.35, 0.7)
    small = img.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BILINEAR)
    back = img.resize((w, h)).filter(ImageFilter.GaussianBlur(max(2.0, w / 40)))
    back.paste(small, (int(rng.integers(0, w - small.width + 1)), int(rng.integers(0, h - small.height + 1))))
    return back


def _night(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, np.float32) / 255.0
    a = a ** rng.uniform(1.2, 2.0) * rng.uniform(0.25, 0.6)
    cast = np.array([1.25, 0.95, 0.7]) if rng.random() < 0.5 else np.array([0.75, 0.85, 1.25])
    return Image.fromarray(np.clip(a * cast * 255.0, 0, 255).astype(np.uint8), "RGB")


def _watermark(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    w, h = out.size
    text = str(rng.choice(["(c) photographer", "www.airliners.net", "planespotters.net", "Photo: J. Smith",
                           "jetphotos", "airplane-pictures.net"]))
    if rng.random() < 0.5:  # credit strip
        band = max(8, int(h * rng.uniform(0.05, 0.1)))
        y = 0 if rng.random() < 0.3 else h - band
        d.rectangle((0, y, w, y + band), fill=(int(rng.integers(0, 60)),) * 3 + (255,))
        d.text((6, y + band // 4), text, fill=(235, 235, 235, 255))
    else:  # watermark across the image
        for k in range(int(rng.integers(1, 4))):
            d.text((int(rng.integers(0, max(1, w - 120))), int(rng.integers(0, max(1, h - 12)))), text,
                   fill=(255, 255, 255, int(rng.integers(80, 180))))
    return Image.alpha_composite(out, layer).convert("RGB")


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
    ratios = (0.5, 2.0) if aug.squash_p and rng.random() < aug.squash_p else aug.ratio
    for _ in range(10):  # torchvision's RandomResizedCrop rule: 10 tries, then the whole image
        area = rng.uniform(*aug.area) * w * h
        ratio = float(np.exp(rng.uniform(np.log(ratios[0]), np.log(ratios[1]))))
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
    if aug.zoom_out_p and rng.random() < aug.zoom_out_p:
        out = _zoom_out(out, rng)
    if aug.night_p and rng.random() < aug.night_p:
        out = _night(out, rng)
    if aug.watermark_p and rng.random() < aug.watermark_p:
        out = _watermark(out, rng)
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
    out = np.empty((len(jobs), *spec.input_shape), np.uint8)  # filled view by view: held once
    if workers > 1:
        # spawn, not fork: the parent has TensorFlow's thread pools, which do not survive a fork
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for k, view in enumerate(pool.map(_one, jobs, chunksize=32)):
                out[k] = view
    else:
        for k, job in enumerate(jobs):
            out[k] = _one(job)
    if cache is not None:
        write_npy(cache, out)
    return out


# ---------------------------------------------------------------- Keras-layer augmentation
# of the networks trained whole on images (compact CNN, VGG16, the R recipe), in the tf.data graph


def augmentation(extra: bool = True, grayscale: bool = False, seed: int | None = None):
    """Training-time augmentation as Keras preprocessing layers (applied in the tf.data graph only).

    The first group reproduces the R original's ``image_data_generator``: rotation 40 degrees,
    width/height shift 0.2, shear 0.2, zoom 0.2, horizontal flip, ``fill_mode = "nearest"``.
    ``extra`` adds what the R recipe lacked: random crops (zoom-in), contrast/brightness jitter,
    Gaussian blur and Gaussian noise. ``grayscale`` randomly desaturates 20 % of images.

    Input and output: float32 ``(batch, H, W, 3)`` in [0, 1]; JPEG re-compression is applied
    separately on uint8 pixels (:func:`jpeg_recompress`).
    """
    import keras  # deferred: TensorFlow start-up
    from keras import layers  # deferred: TensorFlow start-up

    aug = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(40 / 360, fill_mode="nearest", seed=seed),
        layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed),
        layers.RandomShear(x_factor=0.2, y_factor=0.2, fill_mode="nearest", seed=seed),
        layers.RandomZoom(0.2, fill_mode="nearest", seed=seed),
    ]
    if extra:
        aug += [
            layers.RandomContrast(0.3, seed=seed),
            layers.RandomBrightness(0.2, value_range=(0.0, 1.0), seed=seed),
            layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0.0, 1.0), seed=seed),
            layers.GaussianNoise(0.03, seed=seed),
        ]
    if grayscale:
        aug.append(layers.RandomGrayscale(factor=0.2, seed=seed))
    return keras.Sequential(aug, name="augmentation")


def jpeg_recompress(images_uint8, min_quality: int = 40, max_quality: int = 95, seed: int = 0):
    """Random JPEG re-compression of a uint8 ``(batch, H, W, 3)`` tensor (``tf.image``).

    Returns a uint8 tensor of the same shape. Quality is drawn per image from
    ``[min_quality, max_quality]``.
    """
    import tensorflow as tf  # deferred: TensorFlow start-up

    def one(img):
        return tf.image.random_jpeg_quality(img, min_quality, max_quality, seed=seed)

    return tf.map_fn(one, images_uint8, fn_output_signature=tf.uint8)
