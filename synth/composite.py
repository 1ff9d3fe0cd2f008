"""Renders composited onto backgrounds cut from real photos (``python -m synth composite``).

Why: a classifier trained on renders over the renderer's synthetic sky does not transfer to
spotter photos, which show the aircraft large, mostly side-on, often on the ground, over real
skies, aprons, grass and buildings. This module pastes each rendered aircraft (cut out by its
coverage mask, ``synth render --masks``) onto a scene built from patches of real photos.

**Backgrounds come only from the TRAIN split of the backgrounds dataset** (rows with
``split == "train"``); validation and test photos are never opened, so no pixel of a held-out
real photo can leak into training data through a composite's background, whatever the
composite's own split.

Backgrounds (:func:`scan_photo`, :func:`build_background`): a real photo contains an
aircraft, usually in the middle, so only two bands are cut from it, after applying the row's
``crop_box``: a sky band from the top (:data:`SKY_BAND`, the top 30 % of the rows) and a ground
band from the bottom (:data:`GROUND_BAND`, the bottom 20 %). In each band the horizontal window
of :data:`WINDOW` of its width with the fewest edges is kept (that steps around a tail fin poking
into the sky band or a wheel into the ground band). A band whose best window still has many more
edges than typical is rejected (:data:`SKY_EDGE`, :data:`GROUND_EDGE`), as is a sky window with a
big jump in brightness within a row (a smooth fuselage or fin against the sky) or a night-dark
one (:data:`SKY_ROW_RANGE`), and a bottom band that looks like sky (a photo of an aircraft in
flight). The bands are stretched into a sky-over-ground scene with the horizon at a random
height (:data:`HORIZON`, 50-85 % of the frame down) or into a sky-only scene (about
:data:`SKY_ONLY_SHARE` of the composites: in-flight shots).

Aircraft (:func:`composite_image`): cut from the render by its mask (eroded by one pixel, since
the stored render is blurred beyond the mask, then feathered by a Gaussian of
:data:`FEATHER_SIGMA`, 1 px at 256 px), its renderer haze removed (:func:`dehaze`), scaled so
that the longer side of its box spans :data:`FILL` (60-95 %) of the width, never mirrored
(liveries and titles would read backwards). Ground scenes put the
bottom of the aircraft (the wheels) near or below the horizon line; in-flight scenes anywhere.
Which scene a render gets leans on its view, recovered from the render's seed
(:func:`render_view`): gear down and wings level make a ground scene more likely, gear up or
banked a sky-only one. The aircraft's brightness, contrast and colour cast are moved a little
towards the background's (:func:`match_photometry`); then the whole image goes through the
renderer's photo degradation (:func:`synth.render.degrade`: blur, noise) and JPEG at a quality of
55-95, as ``synth render`` does, so the aircraft is not the only crisp, clean thing in it.

Output: a dataset folder laid out like ``synth render``'s (``images/<icao_type>/<render
stem>_c<k>.jpg``, ``masks/`` with each composite's aircraft alpha, ``metadata.csv`` in the shared
schema, ``manifest.json``). Labels, airline and split are the render's; ``source`` is
``flightgear-composite``; ``source_id`` names the render and the background photo
(``<render source_id>#<k>|<photo source>:<photo source_id>``); ``attribution`` credits both;
``page_url`` is the background photo's page (its attribution link).

**Licence: composites are derived from real photos and inherit their restrictions.** The
background pixels come from photos that are the photographers' copyright (FGVC-Aircraft:
non-commercial research only): a composite is for internal training only, is never
redistributed and never leaves ``data/`` (git-ignored); the real photos themselves are never
copied, only read in place. The aircraft is a FlightGear render (GPL-2.0-or-later).

Deterministic for a seed (every random draw comes from a generator seeded by the seed, the
render's path and the composite's index, in any worker and order); parallel over worker
processes; resumable (images are written atomically; an interrupted run keeps them) and
idempotent (an unchanged re-run does nothing; changed parameters or inputs start over).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing as mp
import shutil
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from dataset.decode import decode_image
from dataset.images import phash, sha256_file, sha256_hex
from dataset.metadata import read_rows, write_bytes_atomic, write_rows_atomic
from dataset.schema import METADATA_FILE, empty_row
from ingest.core import parse_crop_box
from synth.dataset import SYNTH_VERSION, encode_mask_png, mask_relpath, view_rng
from synth.render import degrade, encode_jpeg, sample_view

log = logging.getLogger(__name__)

#: Bump when compositing changes, so existing outputs are made again.
COMPOSITE_VERSION = "1"
SOURCE = "flightgear-composite"
MANIFEST_FILE = "manifest.json"
LICENCE = (
    "aircraft: GPL-2.0-or-later (FlightGear render); background: cut from a real photo, the "
    "photographer's copyright: internal training only, not redistributable"
)

#: Top fraction of a (cropped) photo's rows cut as its sky band.
SKY_BAND = 0.30
#: Bottom fraction of a (cropped) photo's rows cut as its ground band.
GROUND_BAND = 0.20
#: Width of the window kept of a band, as a fraction of the band's width (the one with fewest
#: edges); 0.45 steps around most tail fins (0.6 often could not).
WINDOW = 0.45
#: A band is rejected when its window's edge density (fraction of edge pixels) exceeds
#: ``max(floor, factor * median over the train photos)``, sky and ground separately. Chosen by eye
#: on the 3,258 train photos of real-airliners (sheets of windows sorted by density): sky windows
#: are mostly clean sky up to about 0.04 (median 0.004), above it tail fins, fuselages of
#: close-ups, masts and aprons become common; ground windows (median 0.17) are mostly grass and
#: tarmac up to about 0.3, above it landing gears, engines and parked aircraft.
SKY_EDGE = (0.04, 3.0)
GROUND_EDGE = (0.04, 1.75)
#: A sky window is also rejected when, resampled to 32x16 grey, the 90th percentile over its rows
#: of (row max - row min) exceeds this many 8-bit levels (a smooth white fuselage or a fin against
#: the sky has few edges but a big jump within a row; clouds stay under about 45), or when its
#: median grey is under :data:`SKY_MIN_LUMA` (night shots: a daylight render on them looks pasted).
SKY_ROW_RANGE = 50.0
SKY_MIN_LUMA = 25.0
#: Edge threshold on the 8-bit grey level difference of neighbouring pixels of a band resampled to
#: :data:`_SCAN_SIZE` (sharp edges: aircraft outlines, text; not cloud gradients).
EDGE_LEVEL = 16
_SCAN_SIZE = (128, 32)
#: Horizon height range, as a fraction of the frame from the top.
HORIZON = (0.50, 0.85)
#: Intended share of sky-only (in-flight) scenes.
SKY_ONLY_SHARE = 0.35
#: Sky-only probability for a render with gear down and wings level (|bank| <= 10 deg), and for
#: the others; with the spotter views of ``synth render`` (about a third gear down and level)
#: this gives about :data:`SKY_ONLY_SHARE` in all.
P_SKY_GROUNDLIKE, P_SKY_AIRBORNE = 0.15, 0.45
#: Longer side of the aircraft's box, as a fraction of the output width.
FILL = (0.60, 0.95)
#: Margin kept between the aircraft's box and the frame, fraction of the size.
MARGIN = 0.02
#: Gaussian sigma of the feathered mask edge, in pixels of a 256 px output (scaled with the size,
#: as :func:`synth.render.degrade` scales its blur).
FEATHER_SIGMA = 1.0


class CompositeError(RuntimeError):
    """Unusable inputs (no masks, no train backgrounds, ...) or an output folder not ours."""


@dataclass(frozen=True)
class CompositeParams:
    """Everything that determines the output (the manifest compares these)."""

    per_render: int = 1
    size: int = 256
    seed: int = 0
    renders_sha256: str = ""
    backgrounds_sha256: str = ""
    composite_version: str = COMPOSITE_VERSION

    def as_dict(self) -> dict:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Background:
    """One TRAIN photo of the backgrounds dataset and the bands usable from it.

    ``sky`` / ``ground``: ``(left, right)`` pixel columns of the kept window of the sky / ground
    band in the photo after ``crop_box``, or ``None`` when that band was rejected.
    """

    image_path: str
    file: str
    source: str
    source_id: str
    attribution: str
    page_url: str
    crop_box: tuple[int, int, int, int] | None
    sky: tuple[int, int] | None = None
    ground: tuple[int, int] | None = None


def _stable_int(*parts) -> int:
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


# ------------------------------------------------------------------------------------------
# backgrounds


def train_backgrounds(folder: str | Path) -> list[Background]:
    """The rows of the backgrounds dataset at ``folder`` whose split is ``train``, unscanned.

    Only those rows are returned: validation and test photos are never used (nor opened).
    Sorted by ``image_path``.

    Raises:
        CompositeError: no ``metadata.csv``, no row with ``split == "train"``, or a train row's
            ``crop_box`` is not four integers inside its ``width`` x ``height``.
    """
    folder = Path(folder)
    csv_path = folder / METADATA_FILE
    if not csv_path.is_file():
        raise CompositeError(f"{csv_path} not found (the real photos: `make import-real`)")
    rows = read_rows(csv_path)
    train = [r for r in rows if r.get("split") == "train"]
    if not train:
        raise CompositeError(
            f"{csv_path} has no train rows ({len(rows)} rows, splits "
            f"{dict(Counter(r.get('split', '') for r in rows))}): backgrounds come from train photos only"
        )
    out = []
    for r in sorted(train, key=lambda r: r["image_path"]):
        try:
            box = parse_crop_box(r.get("crop_box", ""), int(r["width"] or 10**9), int(r["height"] or 10**9))
        except ValueError as exc:
            raise CompositeError(f"{csv_path}: {r['image_path']}: {exc}") from None
        out.append(Background(
            image_path=r["image_path"], file=str((folder / r["image_path"]).resolve()),
            source=r.get("source", ""), source_id=r.get("source_id", "") or r["image_path"],
            attribution=r.get("attribution", ""), page_url=r.get("page_url", ""), crop_box=box,
        ))
    return out


def open_photo(bg: Background) -> Image.Image:
    """The background photo as RGB, EXIF orientation applied, cut to its ``crop_box``.

    Decoded by the project's one decoder (:func:`dataset.decode.decode_image`), whose frame
    the ``crop_box`` refers to. Raises ``dataset.decode.ImageDecodeError`` or ``OSError``.
    """
    im = decode_image(bg.file)
    if bg.crop_box is not None:
        im = im.crop(bg.crop_box)
    return im


def band_rows(height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row ranges ``(top, bottom)`` of the sky band and the ground band of a photo ``height`` rows tall."""
    sky = (0, max(1, round(SKY_BAND * height)))
    ground = (min(height - 1, height - round(GROUND_BAND * height)), height)
    return sky, ground


def edge_columns(band: Image.Image) -> np.ndarray:
    """Edge density per column of ``band`` resampled to 128x32 grey: (128,) float in [0, 1].

    An edge pixel: the absolute grey difference to its right or lower neighbour, summed, is over
    :data:`EDGE_LEVEL` (8-bit levels).
    """
    g = np.asarray(band.convert("L").resize(_SCAN_SIZE, Image.Resampling.BILINEAR), np.float32)
    e = np.zeros_like(g)
    e[:, :-1] += np.abs(np.diff(g, axis=1))
    e[:-1, :] += np.abs(np.diff(g, axis=0))
    return (e > EDGE_LEVEL).mean(axis=0)


def best_window(cols: np.ndarray, frac: float = WINDOW) -> tuple[int, float]:
    """Start column and mean of the window of ``frac`` of ``cols`` with the lowest mean (first on ties)."""
    n = len(cols)
    k = max(1, round(frac * n))
    c = np.concatenate([[0.0], np.cumsum(cols)])
    means = (c[k:] - c[:-k]) / k
    i = int(np.argmin(means))
    return i, float(means[i])


@dataclass(frozen=True)
class BandScan:
    """Edge scores and windows of one photo's bands (see :func:`scan_photo`)."""

    width: int
    sky_window: tuple[int, int]
    sky_score: float
    ground_window: tuple[int, int]
    ground_score: float
    ground_is_sky: bool
    sky_row_range: float = 0.0
    sky_luma: float = 128.0


def scan_photo(im: Image.Image) -> BandScan:
    """Score the sky and ground bands of a (cropped) photo.

    Returns the least-edgy :data:`WINDOW` of each band (pixel columns) and its edge density
    (fraction of edge pixels, 0-1), the sky window's row range and median grey (0-255,
    :data:`SKY_ROW_RANGE`), and whether the bottom band's window looks like sky (an
    aircraft photographed in flight) rather than ground: almost no fine texture (mean absolute
    difference to its 3x3 box blur under 0.8 grey levels at full resolution; grass and tarmac
    have 1.5 or more), or clearly blue (median blue over median red by more than 25 levels), or
    little texture (under 1.5) and the top band's colour (medians within 30 levels). Thresholds
    chosen by eye on the train photos of real-airliners.
    """
    w, h = im.size
    (s0, s1), (g0, g1) = band_rows(h)
    sky, ground = im.crop((0, s0, w, s1)), im.crop((0, g0, w, g1))
    out = []
    for band in (sky, ground):
        start, score = best_window(edge_columns(band))
        n = _SCAN_SIZE[0]
        k = max(1, round(WINDOW * n))
        left, right = int(start * w // n), int(-(-(start + k) * w // n))
        out.append(((left, max(left + 1, min(w, right))), score))
    sx0, sx1 = out[0][0]
    sg = np.asarray(sky.crop((sx0, 0, sx1, sky.height)).convert("L").resize((32, 16), Image.Resampling.BILINEAR), np.float32)
    row_range = float(np.percentile(sg.max(axis=1) - sg.min(axis=1), 90))
    gx0, gx1 = out[1][0]
    gwin = ground.crop((gx0, 0, gx1, ground.height))
    grey = gwin.convert("L")
    texture = float(np.abs(np.asarray(grey, np.float32) - np.asarray(grey.filter(ImageFilter.BoxBlur(1)), np.float32)).mean())
    mg = np.median(np.asarray(gwin, np.float32).reshape(-1, 3), axis=0)
    ms = np.median(np.asarray(sky, np.float32).reshape(-1, 3), axis=0)
    ground_is_sky = bool(texture < 0.8 or mg[2] - mg[0] > 25 or (texture < 1.5 and np.abs(mg - ms).max() < 30))
    return BandScan(w, out[0][0], out[0][1], out[1][0], out[1][1], ground_is_sky, row_range, float(np.median(sg)))


def _scan_one(bg: Background) -> BandScan | None:
    try:
        return scan_photo(open_photo(bg))
    except Exception as exc:  # unreadable photo: skipped, counted
        log.warning("background %s skipped: %s: %s", bg.image_path, type(exc).__name__, exc)
        return None


def scan_backgrounds(backgrounds: list[Background], workers: int = 2, progress: bool = False) -> tuple[list[Background], dict]:
    """Score every photo's bands and keep the usable ones.

    Thresholds: a band is accepted when its window's edge density is at most
    ``max(floor, factor * median)`` over all photos (:data:`SKY_EDGE`, :data:`GROUND_EDGE`); a
    sky band also when it has no big jump within a row and is not night-dark
    (:data:`SKY_ROW_RANGE`, :data:`SKY_MIN_LUMA`), a ground band when it does not look like sky
    (:func:`scan_photo`).

    Returns:
        ``(usable, stats)``: the backgrounds with at least an accepted sky band, with ``sky`` /
        ``ground`` windows filled in (``ground`` ``None`` when rejected), sorted by
        ``image_path``; ``stats`` counts photos, accepted bands and the thresholds.

    Raises:
        CompositeError: no photo has an acceptable sky band.
    """
    from tqdm import tqdm

    if workers > 1 and len(backgrounds) > 64:
        with mp.get_context("spawn").Pool(workers) as pool:
            scans = list(tqdm(pool.imap(_scan_one, backgrounds, chunksize=32), total=len(backgrounds),
                              desc="scan backgrounds", unit="photo", disable=not progress))
    else:
        scans = [_scan_one(b) for b in tqdm(backgrounds, desc="scan backgrounds", unit="photo", disable=not progress)]
    ok = [(b, s) for b, s in zip(backgrounds, scans) if s is not None]
    if not ok:
        raise CompositeError("no background photo could be read")
    sky_t = max(SKY_EDGE[0], SKY_EDGE[1] * float(np.median([s.sky_score for _, s in ok])))
    grounds = [s.ground_score for _, s in ok if not s.ground_is_sky] or [0.0]
    gr_t = max(GROUND_EDGE[0], GROUND_EDGE[1] * float(np.median(grounds)))
    usable = []
    for b, s in ok:
        if s.sky_score > sky_t or s.sky_row_range > SKY_ROW_RANGE or s.sky_luma < SKY_MIN_LUMA:
            continue
        ground = s.ground_window if (s.ground_score <= gr_t and not s.ground_is_sky) else None
        usable.append(dataclasses.replace(b, sky=s.sky_window, ground=ground))
    stats = {
        "train_photos": len(backgrounds),
        "unreadable": len(backgrounds) - len(ok),
        "sky_threshold": round(sky_t, 4),
        "ground_threshold": round(gr_t, 4),
        "sky_rejected_edges": sum(s.sky_score > sky_t for _, s in ok),
        "sky_rejected_row_range_or_dark": sum(s.sky_score <= sky_t and (s.sky_row_range > SKY_ROW_RANGE or s.sky_luma < SKY_MIN_LUMA) for _, s in ok),
        "sky_accepted": len(usable),
        "ground_accepted": sum(b.ground is not None for b in usable),
        "ground_looks_like_sky": sum(s.ground_is_sky for _, s in ok),
    }
    if not usable:
        raise CompositeError(f"no train photo has a usable sky band ({stats})")
    return usable, stats


def _fit(patch: Image.Image, width: int, height: int, rng: np.random.Generator, max_stretch: float) -> Image.Image:
    """Resize ``patch`` to ``width`` x ``height``: crop a random part of it so that the vertical
    stretch is at most ``max_stretch`` times the horizontal one, then resize (bicubic)."""
    pw, ph = patch.size
    sy = height / ph
    sx = width / pw
    if sy > sx * max_stretch:  # too anisotropic: use a narrower part of the band
        cw = max(1, min(pw, round(width / (sy / max_stretch))))
        x0 = int(rng.integers(0, pw - cw + 1))
        patch = patch.crop((x0, 0, x0 + cw, ph))
    return patch.resize((width, height), Image.Resampling.BICUBIC)


def build_background(photo: Image.Image, bg: Background, size: int, rng: np.random.Generator,
                     horizon: int | None) -> np.ndarray:
    """A ``size`` x ``size`` scene from a (cropped) photo's bands.

    Args:
        photo: the photo from :func:`open_photo`.
        bg: its entry with the accepted windows (``bg.ground`` needed when ``horizon`` is set).
        horizon: row of the horizon (sky above, ground from there down; the two rows at the
            seam softened by a 1-2-1 vertical filter), or ``None`` for sky only.

    Returns:
        (size, size, 3) uint8 RGB.

    Raises:
        ValueError: a horizon is asked for but the photo has no accepted ground band.
    """
    w, h = photo.size
    (s0, s1), (g0, g1) = band_rows(h)
    sky_h = size if horizon is None else min(size, max(1, horizon))
    x0, x1 = bg.sky
    out = np.zeros((size, size, 3), np.float32)
    out[:sky_h] = np.asarray(_fit(photo.crop((x0, s0, x1, s1)), size, sky_h, rng, max_stretch=2.0), np.float32)
    if horizon is not None and sky_h < size:
        if bg.ground is None:
            raise ValueError(f"{bg.image_path} has no accepted ground band")
        x0, x1 = bg.ground
        ground = _fit(photo.crop((x0, g0, x1, g1)), size, size - sky_h, rng, max_stretch=1.5)
        out[sky_h:] = np.asarray(ground, np.float32)
        seam = out.copy()  # soften the seam: a 1-2-1 vertical filter on the two rows around it
        for r in (sky_h - 1, sky_h):
            if 0 < r < size - 1:
                out[r] = 0.25 * seam[r - 1] + 0.5 * seam[r] + 0.25 * seam[r + 1]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# aircraft


def render_view(renders_manifest: dict | None, source_id: str):
    """The :class:`synth.render.ViewParams` a render was made with, recovered from its seed.

    ``synth render`` draws each view from ``view_rng(seed, livery_key, view)``
    (:func:`synth.dataset.view_rng`); with the renders' manifest (seed, view preset, synth
    version) and the row's ``source_id`` (``<folder>/<livery_id>/<view>``) the same draw gives
    back gear, bank, pitch, ... Returns ``None`` when that is not possible (no manifest, another
    synth version, a ``source_id`` of another form).
    """
    p = (renders_manifest or {}).get("params") or {}
    if p.get("synth_version") != SYNTH_VERSION or "seed" not in p:
        return None
    key, _, view = source_id.rpartition("/")
    if not key or not view.isdigit():
        return None
    try:
        return sample_view(view_rng(int(p["seed"]), key, int(view)), p.get("views", "spotter"))
    except ValueError:
        return None


def dehaze(img: np.ndarray, view) -> np.ndarray:
    """Undo the renderer's haze on a render: (H, W, 3) uint8 → float32 (0-255).

    The fragment shader mixes every aircraft colour towards the render's horizon colour,
    ``out = gain * ((1 - haze) * c + haze * horizon)`` (:mod:`synth.render`, ``u_haze``), which on
    a real background reads as a veil of the wrong colour; this returns ``gain * c`` (the
    exposure and colour gain kept). ``view`` is the render's :class:`synth.render.ViewParams`
    (:func:`render_view`).
    """
    gain = view.exposure * np.asarray(view.gain, np.float32)
    veil = 255.0 * gain * view.haze * np.asarray(view.sky_horizon, np.float32)
    return np.clip((img.astype(np.float32) - veil) / (1.0 - view.haze), 0, 255)


def match_photometry(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the aircraft's brightness, contrast and colour cast a little towards the background's.

    Args:
        fg: (H, W, 3) float32 aircraft pixels (0-255), meaningful where ``alpha`` > 0.
        alpha: (H, W) float32 in [0, 1].
        bg: (H, W, 3) float32 background (0-255).

    Returns:
        (H, W, 3) float32: the mean luma is multiplied by ``(Yb/Ya)^t`` (t 0.1-0.3), each channel
        by the background's colour cast (channel mean / luma) over the aircraft's to the power
        0.15-0.35, the luma contrast by ``(sb/sa)^t`` (t 0-0.15); every gain clipped to 0.75-1.3.
    """
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    sel = alpha > 0.5
    if sel.sum() < 16:
        return fg
    fa = fg[sel]
    mf, mb = fa.mean(0) + 1.0, bg.reshape(-1, 3).mean(0) + 1.0
    yf, yb = float(mf @ luma), float(mb @ luma)
    t_lum, t_col, t_con = rng.uniform(0.1, 0.3), rng.uniform(0.15, 0.35), rng.uniform(0.0, 0.15)
    gain = np.clip((yb / yf) ** t_lum * ((mb / yb) / (mf / yf)) ** t_col, 0.75, 1.3).astype(np.float32)
    out = fg * gain
    sf = float((fa @ luma).std()) + 1.0
    sb = float((bg.reshape(-1, 3) @ luma).std()) + 1.0
    c = float(np.clip((sb / sf) ** t_con, 0.75, 1.3))
    m = (out[sel] @ luma).mean()
    return (out - m) * c + m


def cut_aircraft(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The aircraft of a render: (RGB float32, alpha float32 in [0, 1], box).

    The mask is eroded by one pixel (a 3x3 minimum: the stored render is blurred, so its
    outermost aircraft pixels are mixed with the synthetic sky). ``box`` = ``(left, top, right,
    bottom)`` of alpha > 0.5 (exclusive right/bottom).

    Raises:
        ValueError: the mask is empty (no aircraft pixel) or not the image's size.
    """
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {img.shape[:2]}")
    m = Image.fromarray(mask, "L").filter(ImageFilter.MinFilter(3))
    a = np.asarray(m, np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.5)
    if len(ys) == 0:
        raise ValueError("empty mask: no aircraft pixel")
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return img.astype(np.float32), a, box


@dataclass
class Placement:
    """Where the aircraft goes in one composite (output pixels) and on what scene."""

    sky_only: bool
    horizon: int | None
    scale: float
    left: int
    top: int


def plan_placement(box_wh: tuple[int, int], size: int, rng: np.random.Generator, sky_only: bool,
                   on_ground: bool) -> Placement:
    """Scale and position of an aircraft box ``(w, h)`` (render pixels) in a ``size`` frame.

    The longer side spans :data:`FILL` of the frame (``0.60 + 0.35 * sqrt(u)``: skewed to large,
    mean 0.83, as spotters frame airliners); the box stays :data:`MARGIN` inside it, its free
    room shared between the sides by the mean of two uniform draws (centre-weighted). Sky only:
    anywhere in the frame. Ground scene: horizon in :data:`HORIZON`; the box's bottom 2 % of the
    frame above to 12 % below the horizon when ``on_ground`` (wheels on the ground), 10 % above
    to just on it otherwise (just airborne: taking off, landing); when the box does not fit with that horizon the
    horizon moves (or, failing that, the aircraft shrinks).
    """
    bw, bh = box_wh
    m = MARGIN * size
    fill = FILL[0] + (FILL[1] - FILL[0]) * math.sqrt(float(rng.random()))
    d = float(rng.uniform(-0.02, 0.12) if on_ground else rng.uniform(-0.10, 0.0)) * size
    hz = float(rng.uniform(*HORIZON)) * size
    ux, uy = float(rng.random() + rng.random()) / 2, float(rng.random() + rng.random()) / 2
    for _ in range(20):
        s = fill * size / max(bw, bh)
        w, h = bw * s, bh * s
        left = m + ux * max(0.0, size - 2 * m - w)
        if sky_only:
            top = m + uy * max(0.0, size - 2 * m - h)
            return Placement(True, None, s, int(round(left)), int(round(top)))
        lo, hi = h + m - d, size - m - d  # horizon range for which the box fits
        lo_h, hi_h = max(lo, HORIZON[0] * size - 0.1 * size), min(hi, HORIZON[1] * size + 0.05 * size)
        if lo_h <= hi_h:
            hz_c = float(np.clip(hz, lo_h, hi_h))
            bottom = hz_c + d
            return Placement(False, int(round(hz_c)), s, int(round(left)), int(round(bottom - h)))
        fill *= 0.93
    raise ValueError(f"cannot place a {bw}x{bh} box in a {size} px frame")


def composite_image(render: np.ndarray, mask: np.ndarray, photo: Image.Image, bg: Background, size: int,
                    rng: np.random.Generator, sky_only: bool, on_ground: bool):
    """Composite one render onto a scene made from ``photo``.

    Args:
        render: (h, w, 3) uint8 RGB render (the stored JPEG, decoded).
        mask: (h, w) uint8 coverage mask of the render (0-255).
        photo, bg: the background photo (:func:`open_photo`) and its accepted bands.
        size: output width = height.
        sky_only: in-flight scene (sky band only) or sky over ground.
        on_ground: with a ground scene, wheels near/below the horizon (else just above).

    Returns:
        ``(rgb, alpha, placement)``: (size, size, 3) uint8 before degradation and JPEG,
        (size, size) uint8 alpha of the aircraft, :class:`Placement`.
    """
    fg, a, (x0, y0, x1, y1) = cut_aircraft(render, mask)
    pl = plan_placement((x1 - x0, y1 - y0), size, rng, sky_only, on_ground)
    scene = build_background(photo, bg, size, rng, pl.horizon)
    # the aircraft's box (plus a 2-px margin for the feather) scaled into place
    pad = 2
    cx0, cy0 = max(0, x0 - pad), max(0, y0 - pad)
    cx1, cy1 = min(render.shape[1], x1 + pad), min(render.shape[0], y1 + pad)
    tw = max(1, round((cx1 - cx0) * pl.scale))
    th = max(1, round((cy1 - cy0) * pl.scale))
    ox = pl.left - round((x0 - cx0) * pl.scale)
    oy = pl.top - round((y0 - cy0) * pl.scale)
    fg_im = Image.fromarray(np.clip(fg[cy0:cy1, cx0:cx1] + 0.5, 0, 255).astype(np.uint8), "RGB")
    fg_s = np.asarray(fg_im.resize((tw, th), Image.Resampling.BICUBIC), np.float32)
    a_im = Image.fromarray((a[cy0:cy1, cx0:cx1] * 255 + 0.5).astype(np.uint8), "L").resize((tw, th), Image.Resampling.BILINEAR)
    a_im = a_im.filter(ImageFilter.GaussianBlur(max(0.3, FEATHER_SIGMA * size / 256)))
    a_s = np.asarray(a_im, np.float32) / 255.0
    # paste into full-frame layers (clipped at the borders)
    full_fg = np.zeros((size, size, 3), np.float32)
    full_a = np.zeros((size, size), np.float32)
    sx0, sy0 = max(0, -ox), max(0, -oy)
    dx0, dy0 = max(0, ox), max(0, oy)
    wx, wy = min(tw - sx0, size - dx0), min(th - sy0, size - dy0)
    if wx > 0 and wy > 0:
        full_fg[dy0:dy0 + wy, dx0:dx0 + wx] = fg_s[sy0:sy0 + wy, sx0:sx0 + wx]
        full_a[dy0:dy0 + wy, dx0:dx0 + wx] = a_s[sy0:sy0 + wy, sx0:sx0 + wx]
    bgf = scene.astype(np.float32)
    full_fg = match_photometry(full_fg, full_a, bgf, rng)
    out = full_fg * full_a[..., None] + bgf * (1 - full_a[..., None])
    rgb = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    alpha = np.clip(full_a * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, alpha, pl


# ------------------------------------------------------------------------------------------
# dataset


def composite_relpath(render_rel: str, k: int) -> str:
    """``images/<t>/<stem>.jpg`` of a render → ``images/<t>/<stem>_c<k>.jpg`` of its composite ``k``."""
    stem, _, _ = render_rel.rpartition(".")
    return f"{stem or render_rel}_c{k}.jpg"


def attribution(render_row: dict, bg: Background) -> str:
    """Credit line of a composite: the render's credit, then the background photo's."""
    who = f" ({bg.attribution})" if bg.attribution else ""
    return (f"{render_row.get('attribution', '')}; composited onto a background cut from the real photo "
            f"{bg.source}:{bg.source_id}{who}")


@dataclass
class _Ctx:
    renders: str
    out: str
    size: int
    seed: int
    renders_manifest: dict | None
    usable: list[Background]
    with_ground: list[int]


_CTX: _Ctx | None = None


def _init(ctx: _Ctx) -> None:
    global _CTX
    _CTX = ctx


def plan_composite(ctx: _Ctx, render_row: dict, k: int):
    """The first draws of composite ``k`` of a render: ``(rng, sky_only, on_ground, background, view)``.

    ``view``: the render's :class:`synth.render.ViewParams` (:func:`render_view`) or ``None``.

    Made before anything is read, so a resumed run knows which background an existing image used.
    """
    rng = np.random.default_rng([ctx.seed, _stable_int("composite", render_row["image_path"]), k])
    view = render_view(ctx.renders_manifest, render_row.get("source_id", ""))
    if view is None:
        p_sky, on_ground = SKY_ONLY_SHARE, True
    else:
        on_ground = bool(view.gear_down and abs(view.bank) <= 10)
        p_sky = P_SKY_GROUNDLIKE if on_ground else P_SKY_AIRBORNE
    sky_only = bool(rng.random() < p_sky) or not ctx.with_ground
    pool = range(len(ctx.usable)) if sky_only else ctx.with_ground
    bg = ctx.usable[pool[int(rng.integers(len(pool)))]]
    return rng, sky_only, on_ground, bg, view


def make_composite(ctx: _Ctx, render_row: dict, k: int) -> dict[str, str]:
    """Make (or reuse, when its image exists) composite ``k`` of one render; its metadata row."""
    out = Path(ctx.out)
    rel = composite_relpath(render_row["image_path"], k)
    path = out / rel
    rng, sky_only, on_ground, bg, view = plan_composite(ctx, render_row, k)
    if path.is_file():
        data = path.read_bytes()
        im = Image.open(path)
        im.load()
    else:
        rdir = Path(ctx.renders)
        with Image.open(rdir / render_row["image_path"]) as r:
            render = np.asarray(r.convert("RGB"))
        with Image.open(rdir / mask_relpath(render_row["image_path"])) as m:
            mask = np.asarray(m.convert("L"))
        if view is not None:
            render = np.clip(dehaze(render, view) + 0.5, 0, 255).astype(np.uint8)
        photo = open_photo(bg)
        rgb, alpha, _ = composite_image(render, mask, photo, bg, ctx.size, rng, sky_only, on_ground)
        vp = sample_view(rng)  # the renderer's ranges of blur, noise and JPEG quality
        vp = dataclasses.replace(vp, blur_sigma=vp.blur_sigma * 0.5)  # render and bands are already soft
        im = degrade(rgb, vp, rng)
        data = encode_jpeg(im, vp.jpeg_quality)
        write_bytes_atomic(out / mask_relpath(rel), encode_mask_png(alpha))
        write_bytes_atomic(path, data)
    row = empty_row()
    row.update({c: render_row.get(c, "") for c in row})
    row.update(
        image_path=rel,
        sha256=sha256_hex(data),
        source=SOURCE,
        source_id=f"{render_row.get('source_id', '')}#{k}|{bg.source}:{bg.source_id}",
        page_url=bg.page_url,
        image_url="",
        attribution=attribution(render_row, bg),
        licence=LICENCE,
        width=str(im.width),
        height=str(im.height),
        phash=phash(im),
        near_duplicate_of="",
        crop_box="",
    )
    return row


def _run(items: list[tuple[dict, int]]) -> list[dict[str, str]]:
    out = []
    for row, k in items:
        try:
            out.append(make_composite(_CTX, row, k))
        except Exception as exc:  # name the render; picklable for the pool
            raise RuntimeError(f"compositing {row['image_path']} #{k} failed: {type(exc).__name__}: {exc}") from None
    return out


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


BACKGROUNDS_FILE = "backgrounds.json"


def _load_or_scan(out: Path, folder: Path, backgrounds_sha256: str, workers: int, progress: bool):
    """Usable train backgrounds (cached in ``<out>/backgrounds.json`` by the backgrounds CSV's
    sha256 and :data:`COMPOSITE_VERSION`) and the scan's stats."""
    train = train_backgrounds(folder)
    key = {"backgrounds_sha256": backgrounds_sha256, "composite_version": COMPOSITE_VERSION}
    cached = _read_json(out / BACKGROUNDS_FILE)
    if cached and cached.get("key") == key:
        by_path = {b.image_path: b for b in train}
        usable = [
            dataclasses.replace(by_path[u["image_path"]], sky=tuple(u["sky"]), ground=tuple(u["ground"]) if u["ground"] else None)
            for u in cached["usable"] if u["image_path"] in by_path
        ]
        if len(usable) == len(cached["usable"]):
            return usable, cached["stats"]
    usable, stats = scan_backgrounds(train, workers=workers, progress=progress)
    doc = {"key": key, "stats": stats,
           "usable": [{"image_path": b.image_path, "sky": list(b.sky), "ground": list(b.ground) if b.ground else None}
                      for b in usable]}
    write_bytes_atomic(out / BACKGROUNDS_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return usable, stats


def build_composites(
    renders: str | Path,
    backgrounds: str | Path,
    out: str | Path,
    per_render: int = 1,
    size: int = 256,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Composite every render of ``renders`` onto backgrounds from the TRAIN photos of ``backgrounds``.

    Args:
        renders: a ``synth render`` output with masks (``masks/``, ``synth render --masks``).
        backgrounds: a dataset of real photos in the shared schema (``metadata.csv``, e.g.
            ``data/raw/real-airliners``); only its rows with ``split == "train"`` are used,
            validation and test photos never.
        out: output folder (created; must be empty or a previous composite output).
        per_render: composites per render (>= 1), each with its own background and placement.
        size: output width = height in pixels (16-2048).
        seed: fixes every draw.
        workers: processes (1: in this process).
        progress: tqdm bars (background scan, composites).

    Returns:
        Summary dict: ``status`` (``"up-to-date"`` or ``"composited"``), ``n_images``,
        ``per_manufacturer``, ``per_split``, ``per_type``, ``backgrounds`` (scan stats),
        ``sky_only`` (share of sky-only scenes), ``seconds``.

    Raises:
        CompositeError: no renders CSV, renders without masks ("re-run synth render --masks"),
            backgrounds without train rows, bad parameters, or an ``out`` that is not ours.
    """
    renders, backgrounds, out = Path(renders), Path(backgrounds), Path(out)
    if per_render < 1:
        raise CompositeError(f"per_render must be >= 1, got {per_render}")
    if not 16 <= size <= 2048:
        raise CompositeError(f"size must be within 16-2048, got {size}")
    rcsv, bcsv = renders / METADATA_FILE, backgrounds / METADATA_FILE
    if not rcsv.is_file():
        raise CompositeError(f"{rcsv} not found (render first: python -m synth render)")
    if not bcsv.is_file():
        raise CompositeError(f"{bcsv} not found (the real photos: `make import-real`)")
    if out.resolve() in (renders.resolve(), backgrounds.resolve()):
        raise CompositeError(f"--out {out} must differ from the renders and backgrounds folders")
    rrows = read_rows(rcsv)
    if not rrows:
        raise CompositeError(f"{rcsv} has no rows")
    no_mask = [r["image_path"] for r in rrows if not r["image_path"].startswith("images/")
               or not (renders / mask_relpath(r["image_path"])).is_file()]
    if no_mask:
        raise CompositeError(
            f"{len(no_mask)} of {len(rrows)} renders in {renders} have no mask (e.g. {no_mask[0]}): "
            f"re-run `python -m synth render --masks` with the same arguments (images are kept)")
    params = CompositeParams(per_render, size, seed, sha256_file(rcsv), sha256_file(bcsv))
    manifest = _read_json(out / MANIFEST_FILE)
    if out.exists() and any(out.iterdir()) and manifest is None:
        raise CompositeError(f"{out} is not empty and has no {MANIFEST_FILE}: refusing to write into it")
    if manifest is not None:
        same = manifest.get("params") == params.as_dict()
        if same and manifest.get("complete") and (out / METADATA_FILE).is_file():
            rows = read_rows(out / METADATA_FILE)
            if rows and all((out / r["image_path"]).is_file() for r in rows):
                return {"status": "up-to-date", **_summary(rows), "backgrounds": manifest.get("backgrounds", {}),
                        "seconds": 0.0}
        if not same:  # parameters or inputs changed: start over
            for d in ("images", "masks"):
                shutil.rmtree(out / d, ignore_errors=True)
            (out / METADATA_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "images").glob("*/.*.tmp"), *(out / "masks").glob("*/.*.tmp")]:
        stale.unlink(missing_ok=True)
    doc = {"params": params.as_dict(), "complete": False, "renders": str(renders), "backgrounds_dataset": str(backgrounds)}
    write_bytes_atomic(out / MANIFEST_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())

    t0 = time.time()
    usable, stats = _load_or_scan(out, backgrounds, params.backgrounds_sha256, workers, progress)
    ctx = _Ctx(str(renders), str(out), size, seed, _read_json(renders / MANIFEST_FILE), usable,
               [i for i, b in enumerate(usable) if b.ground is not None])
    items = [(r, k) for r in sorted(rrows, key=lambda r: r["image_path"]) for k in range(per_render)]
    chunks = [items[i:i + 16] for i in range(0, len(items), 16)]
    rows: list[dict[str, str]] = []
    bar = tqdm(total=len(items), unit="img", desc="composite", disable=not progress, smoothing=0.05)
    try:
        if workers <= 1:
            _init(ctx)
            for c in chunks:
                rows.extend(_run(c))
                bar.update(len(c))
        else:
            with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(ctx,)) as pool:
                for r in pool.imap_unordered(_run, chunks, chunksize=1):
                    rows.extend(r)
                    bar.update(len(r))
    finally:
        bar.close()
    rows.sort(key=lambda r: r["image_path"])
    write_rows_atomic(out / METADATA_FILE, rows)
    sky_only = sum(plan_composite(ctx, r, k)[1] for r, k in items) / len(items)
    doc.update(complete=True, n_images=len(rows), backgrounds=stats, sky_only_share=round(sky_only, 4))
    write_bytes_atomic(out / MANIFEST_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    return {"status": "composited", **_summary(rows), "backgrounds": stats, "sky_only": round(sky_only, 4),
            "seconds": round(time.time() - t0, 2)}


def _summary(rows: list[dict[str, str]]) -> dict:
    return {
        "n_images": len(rows),
        "per_manufacturer": dict(sorted(Counter(r["manufacturer"] for r in rows).items())),
        "per_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "per_type": dict(sorted(Counter(r["icao_type"] for r in rows).items())),
    }
