"""Write a labelled, split image dataset rendered from the FlightGear AI fleet.

Output (a dataset folder in the shared schema, :mod:`dataset.schema`)::

    <out>/metadata.csv                      the COLUMNS of dataset/schema.py, written atomically
    <out>/images/<icao_type>/<folder>_<livery_id>_<view>.jpg
    <out>/masks/<icao_type>/<folder>_<livery_id>_<view>.png   (with ``masks``, the default)
    <out>/manifest.json                     render parameters + "complete" flag (idempotency)

A mask is the aircraft's coverage in its image: 8-bit grayscale PNG of the same size, 0 on the
sky, 255 on the aircraft, in between on anti-aliased edges; taken from the render before the
photo degradation (blur, noise, JPEG), so the image's edges are softer than the mask's.
:mod:`synth.composite` cuts the aircraft out with it. Masks do not change the images or the CSV:
with or without them the same seed gives the same bytes.

Balancing: the classes are manufacturers. Each class gets exactly ``per_class`` images spread
over all its liveries (``divmod(per_class, n_liveries)``: every livery gets the quotient, a
seeded random subset of liveries one more); when a class has more liveries than ``per_class``
each livery still gets one view, so every livery contributes. With ``min_per_type`` the class
total is first split over ICAO types with that floor (rare types get more views per livery).

Splits are assigned by **airline group** (:func:`synth.fleet.airline_group`): all liveries of
one airline name, across every type and manufacturer, fall in one split, so no airline paint
seen in training appears in validation or test (the paint is a strong shortcut to the type).
Generic house/blank liveries are grouped per type folder. Groups are placed largest first into
the split with the largest deficit against the target ratios, per ICAO type and per manufacturer,
with a bonus for a split that has no livery of a type yet (coverage), all fixed by ``seed``.

Re-running with the same parameters on a complete output is a no-op; an interrupted run with
the same parameters resumes (existing JPEGs are kept: each is written atomically and rendering
is deterministic); changed parameters delete the old images and render again. Asking for masks
on an output rendered without them renders the missing views' masks again, keeping the images
(rendering is deterministic: a re-rendered image that differs from the stored one is rewritten,
so image and mask always agree, and logged).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
import re
import shutil
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dataset.images import phash, sha256_hex
from dataset.metadata import write_bytes_atomic, write_rows_atomic
from dataset.schema import METADATA_FILE, SPLITS, empty_row
from synth.fleet import Livery, airline_group
from synth.render import Renderer, degrade, encode_jpeg, sample_view

log = logging.getLogger(__name__)

#: Bump when the rendering or labelling changes, so existing outputs are re-rendered.
SYNTH_VERSION = "1"
MANIFEST_FILE = "manifest.json"
LICENCE = "GPL-2.0-or-later"
SOURCE = "flightgear"
DEFAULT_RATIOS = (0.7, 0.15, 0.15)


class DatasetError(RuntimeError):
    """Raised for unusable parameters or an output folder synth does not own."""


@dataclass(frozen=True)
class RenderParams:
    """Everything that determines the output (the manifest compares these)."""

    per_class: int
    size: int = 256
    seed: int = 0
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    manufacturers: tuple[str, ...] = ("Airbus", "Boeing")
    types: tuple[str, ...] = ()
    max_liveries_per_type: int = 0
    min_per_type: int = 0
    views: str = "spotter"
    package: str = ""
    synth_version: str = SYNTH_VERSION

    def as_dict(self) -> dict:
        """JSON-serialisable dict."""
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        d["manufacturers"] = list(self.manufacturers)
        d["types"] = list(self.types)
        return d


def _stable_int(*parts) -> int:
    """A stable 32-bit integer from strings/ints (crc32), independent of PYTHONHASHSEED."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def select_liveries(
    liveries: list[Livery], types: tuple[str, ...] = (), max_per_type: int = 0, seed: int = 0
) -> list[Livery]:
    """Filter liveries by ICAO type and cap the number per type.

    Args:
        types: keep only these ICAO type designators (empty: all).
        max_per_type: keep at most this many liveries per ICAO type, a seeded random subset
            (0: no cap).

    Raises:
        DatasetError: a requested type has no livery.
    """
    if types:
        known = {lv.icao_type for lv in liveries}
        missing = sorted(set(types) - known)
        if missing:
            raise DatasetError(f"unknown ICAO type(s) {', '.join(missing)}; known: {', '.join(sorted(known))}")
        liveries = [lv for lv in liveries if lv.icao_type in set(types)]
    if max_per_type > 0:
        by_type: dict[str, list[Livery]] = defaultdict(list)
        for lv in liveries:
            by_type[lv.icao_type].append(lv)
        keep: list[Livery] = []
        for t, lvs in sorted(by_type.items()):
            rng = np.random.default_rng([seed, _stable_int("cap", t)])
            idx = rng.permutation(len(lvs))[:max_per_type]
            keep.extend(lvs[i] for i in sorted(idx))
        liveries = sorted(keep, key=lambda lv: lv.key)
    return liveries


def _spread(total: int, keys: list[str], rng: np.random.Generator) -> dict[str, int]:
    """``total`` items over ``keys``: each gets ``total // n``, a random ``total % n`` one more."""
    q, r = divmod(total, len(keys))
    extra = set(rng.permutation(len(keys))[:r].tolist())
    return {k: q + (1 if i in extra else 0) for i, k in enumerate(keys)}


def _type_quota(total: int, counts: dict[str, int], floor: int) -> dict[str, int]:
    """Split ``total`` over types proportionally to ``counts`` with at least ``floor`` each.

    Types whose proportional share is under ``floor`` are fixed at ``floor`` (never more than
    ``total`` allows); the rest is shared proportionally, rounded by largest remainder so the
    quotas sum to ``total`` exactly.
    """
    fixed: dict[str, int] = {}
    while True:
        free = {t: c for t, c in counts.items() if t not in fixed}
        left = total - sum(fixed.values())
        csum = sum(free.values())
        share = {t: left * c / csum for t, c in free.items()} if csum else {}
        low = [t for t, v in share.items() if v < floor]
        if not low or left <= 0:
            break
        for t in low:
            fixed[t] = floor
    base = {t: int(math.floor(v)) for t, v in share.items()}
    rem = left - sum(base.values())
    for t in sorted(share, key=lambda t: (-(share[t] - base[t]), t))[: max(rem, 0)]:
        base[t] += 1
    return {**fixed, **base}


def plan_views(
    liveries: list[Livery], per_class: int, seed: int = 0, min_per_type: int = 0
) -> dict[str, int]:
    """Number of views per livery so that each manufacturer gets ``per_class`` images.

    Default (``min_per_type=0``): ``q, r = divmod(per_class, n)`` over the class's ``n``
    liveries; every livery gets ``q`` views and ``r`` of them (a seeded random choice) one more,
    so types are represented in proportion to their liveries.

    With ``min_per_type=M``: the class total is first split over its ICAO types in proportion
    to their liveries but with at least ``M`` images per type (rare types such as A342 get more
    views per livery), then each type's quota is spread evenly over its liveries.

    Every livery gets at least one view, so when ``per_class`` is smaller than the number of
    liveries (or a type quota smaller than its liveries) that class gets more than ``per_class``.

    Returns:
        ``{livery.key: n_views}`` with every value >= 1.

    Raises:
        DatasetError: ``per_class`` < 1 or ``min_per_type`` < 0.
    """
    if per_class < 1:
        raise DatasetError(f"per_class must be >= 1, got {per_class}")
    if min_per_type < 0:
        raise DatasetError(f"min_per_type must be >= 0, got {min_per_type}")
    by_class: dict[str, list[Livery]] = defaultdict(list)
    for lv in liveries:
        by_class[lv.manufacturer].append(lv)
    plan: dict[str, int] = {}
    for m, lvs in sorted(by_class.items()):
        rng = np.random.default_rng([seed, _stable_int("plan", m)])
        if min_per_type <= 0:
            spread = _spread(per_class, [lv.key for lv in lvs], rng)
        else:
            by_type: dict[str, list[str]] = defaultdict(list)
            for lv in lvs:
                by_type[lv.icao_type].append(lv.key)
            quota = _type_quota(per_class, {t: len(k) for t, k in by_type.items()}, min_per_type)
            spread = {}
            for t in sorted(by_type):
                spread.update(_spread(quota[t], by_type[t], rng))
        plan.update({k: max(1, v) for k, v in spread.items()})
    return plan


def assign_splits(
    liveries: list[Livery],
    weights: dict[str, int] | None = None,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> dict[str, str]:
    """Assign each livery a split (``train``/``validation``/``test``), grouped by airline.

    Args:
        weights: images per livery key (default 1 each); the ratios apply to image counts.
        ratios: target fractions for (train, validation, test); must sum to 1.

    Returns:
        ``{livery.key: split}``. All liveries of one :func:`synth.fleet.airline_group` share a
        split. Greedy: groups in order of decreasing weight (seeded shuffle breaks ties) go to
        the split with the highest score = manufacturer deficit + ICAO-type deficit (each a
        fraction of that class's total) + 1 per type of the group the split has none of yet.

    Raises:
        DatasetError: ratios not three non-negative numbers summing to 1.
    """
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise DatasetError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    weights = weights or {lv.key: 1 for lv in liveries}
    groups: dict[str, list[Livery]] = defaultdict(list)
    for lv in liveries:
        groups[airline_group(lv)].append(lv)
    names = sorted(groups)
    rng = np.random.default_rng([seed, _stable_int("split")])
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda g: -sum(weights[lv.key] for lv in groups[g]))
    tot_type: Counter[str] = Counter()
    tot_man: Counter[str] = Counter()
    for lv in liveries:
        tot_type[lv.icao_type] += weights[lv.key]
        tot_man[lv.manufacturer] += weights[lv.key]
    cur_type = {s: Counter() for s in SPLITS}
    cur_man = {s: Counter() for s in SPLITS}
    out: dict[str, str] = {}
    for g in names:
        lvs = groups[g]
        gt: Counter[str] = Counter()
        gm: Counter[str] = Counter()
        for lv in lvs:
            gt[lv.icao_type] += weights[lv.key]
            gm[lv.manufacturer] += weights[lv.key]
        best, best_score = None, -math.inf
        for s, r in zip(SPLITS, ratios):
            if r <= 0:
                continue
            score = 0.0
            for t, w in gt.items():
                score += (r * tot_type[t] - cur_type[s][t]) / tot_type[t]
                if cur_type[s][t] == 0:
                    score += 1.0
            for m, w in gm.items():
                score += (r * tot_man[m] - cur_man[s][m]) / tot_man[m]
            if score > best_score + 1e-12:
                best, best_score = s, score
        for lv in lvs:
            out[lv.key] = best
            cur_type[best][lv.icao_type] += weights[lv.key]
            cur_man[best][lv.manufacturer] += weights[lv.key]
    return out


def image_relpath(livery: Livery, view: int) -> str:
    """``images/<icao_type>/<folder>_<livery_id>_<view:03d>.jpg`` (POSIX, safe characters)."""
    stem = f"{livery.folder}_{livery.livery_id}_{view:03d}"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return f"images/{livery.icao_type or 'unknown'}/{stem}.jpg"


def mask_relpath(image_rel: str) -> str:
    """The mask of an image: ``images/<t>/<stem>.jpg`` → ``masks/<t>/<stem>.png`` (POSIX).

    Raises:
        ValueError: ``image_rel`` does not start with ``images/``.
    """
    if not image_rel.startswith("images/"):
        raise ValueError(f"not an image path of a synth dataset: {image_rel!r}")
    stem = image_rel[len("images/"):].rsplit(".", 1)[0]
    return f"masks/{stem}.png"


def encode_mask_png(mask: np.ndarray) -> bytes:
    """An (H, W) uint8 coverage mask (0 background .. 255 aircraft) as 8-bit grayscale PNG bytes.

    Raises:
        ValueError: ``mask`` is not 2-D ``uint8``.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be (H, W) uint8, got {mask.shape} {mask.dtype}")
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def attribution(livery: Livery, package: str) -> str:
    """Credit line for a render of ``livery``."""
    pkg = "flightgear-data-ai"
    m = re.match(r"flightgear-data-ai_(.+?)_all\.deb$", package.replace("%3a", ":"))
    if m:
        pkg += " " + m.group(1)
    who = f" (author: {livery.author})" if livery.author else " (FlightGear AI model authors)"
    return (
        f"Rendered by planespotter synth from FlightGear AI model {livery.folder}/{livery.model_path.name}"
        f"{who}, livery {livery.livery}; Debian package {pkg}; {LICENCE}"
    )


def _row(livery: Livery, view: int, rel: str, data: bytes, width: int, height: int, ph: str, split: str, package: str) -> dict[str, str]:
    row = empty_row()
    row.update(
        image_path=rel,
        sha256=sha256_hex(data),
        manufacturer=livery.manufacturer,
        icao_type=livery.icao_type,
        sub_model=livery.sub_model,
        airline=livery.airline,
        source=SOURCE,
        source_id=f"{livery.folder}/{livery.livery_id}/{view}",
        manufacturer_raw=livery.manufacturer_raw,
        type_raw=livery.description,
        attribution=attribution(livery, package),
        licence=LICENCE,
        width=str(width),
        height=str(height),
        phash=ph,
        split=split,
    )
    return row


# --------------------------------------------------------------------------------------------
# worker side: one Renderer (one EGL context) per process

_RENDERER = None


def _worker_init(size: int, lp_threads: int) -> None:
    global _RENDERER
    if lp_threads > 0:
        os.environ["LP_NUM_THREADS"] = str(lp_threads)
    _RENDERER = Renderer(size)


@dataclass
class _Job:
    livery: Livery
    views: list[int]
    split: str
    out: str
    seed: int
    package: str
    views_preset: str = "spotter"
    masks: bool = True
    rels: list[str] = field(default_factory=list)


def view_rng(seed: int, livery_key: str, view: int) -> np.random.Generator:
    """The generator that fixes view ``view`` of ``livery_key`` (same in any worker/order)."""
    return np.random.default_rng([seed, _stable_int(livery_key), view])


def render_livery(renderer, job: _Job) -> list[dict[str, str]]:
    """Render (or reuse, when present) every view of one livery; return its metadata rows.

    With ``job.masks`` each view's coverage mask is written too (:func:`mask_relpath`); a view
    whose image exists but whose mask does not is rendered again for the mask.
    """
    out = Path(job.out)
    rows = []
    renderer.release_models(keep=job.livery.model_path)
    for view in job.views:
        rel = image_relpath(job.livery, view)
        path = out / rel
        mpath = out / mask_relpath(rel)
        if path.is_file() and (not job.masks or mpath.is_file()):
            data = path.read_bytes()
            im = Image.open(path)
            im.load()
        else:
            rng = view_rng(job.seed, job.livery.key, view)
            vp = sample_view(rng, job.views_preset)
            img, mask = renderer.render(job.livery, vp, return_mask=True)
            im = degrade(img, vp, rng)
            data = encode_jpeg(im, vp.jpeg_quality)
            if not path.is_file() or path.read_bytes() != data:
                if path.is_file():
                    log.warning("%s: re-rendered image differs from the stored one; rewritten", rel)
                write_bytes_atomic(path, data)
            if job.masks:
                write_bytes_atomic(mpath, encode_mask_png(mask))
        rows.append(_row(job.livery, view, rel, data, im.width, im.height, phash(im), job.split, job.package))
    renderer.release_textures()
    return rows


def _worker_run(job: _Job) -> list[dict[str, str]]:
    try:
        return render_livery(_RENDERER, job)
    except Exception as exc:  # name the livery; picklable for the pool
        raise RuntimeError(f"rendering {job.livery.key} failed: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------------------------


def _read_manifest(out: Path) -> dict | None:
    p = out / MANIFEST_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_manifest(out: Path, params: RenderParams, complete: bool, n_images: int = 0, masks: bool = False) -> None:
    doc = {"params": params.as_dict(), "complete": complete, "n_images": n_images, "masks": masks}
    write_bytes_atomic(out / MANIFEST_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def build_dataset(
    liveries: list[Livery],
    out: str | Path,
    params: RenderParams,
    workers: int = 2,
    progress: bool = True,
    masks: bool = True,
) -> dict:
    """Render the dataset described by ``params`` for ``liveries`` into ``out``.

    Args:
        liveries: already filtered by manufacturer (see :func:`select_liveries` for the rest).
        out: output folder; created if missing; must be empty or a previous synth output.
        params: render parameters (stored in the manifest; a change re-renders).
        workers: processes, each with its own EGL context (1: render in this process).
        progress: show a tqdm bar (images, images/s).
        masks: also write each image's coverage mask under ``masks/`` (:func:`mask_relpath`).
            Not a render parameter: images and CSV are the same either way; asking for masks
            on a complete output without them renders the missing masks only (images kept).

    Returns:
        Summary dict: ``status`` (``"up-to-date"`` or ``"rendered"``), ``n_images``,
        ``per_manufacturer``, ``per_split``, ``per_type``, ``seconds``.

    Raises:
        DatasetError: no liveries, or ``out`` is a non-empty folder synth did not write.
    """
    out = Path(out)
    if not liveries:
        raise DatasetError("no liveries to render (check --types / --include-other)")
    manifest = _read_manifest(out)
    if out.exists() and any(out.iterdir()) and manifest is None:
        raise DatasetError(f"{out} is not empty and has no {MANIFEST_FILE}: refusing to write into it")
    if manifest is not None:
        same = manifest.get("params") == params.as_dict()
        if same and manifest.get("complete") and (out / METADATA_FILE).is_file():
            with open(out / METADATA_FILE, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            if all((out / r["image_path"]).is_file() for r in rows) and (
                not masks or all((out / mask_relpath(r["image_path"])).is_file() for r in rows)
            ):
                return {"status": "up-to-date", **_summary(rows), "seconds": 0.0}
        if not same:  # parameters changed: drop the old render
            shutil.rmtree(out / "images", ignore_errors=True)
            shutil.rmtree(out / "masks", ignore_errors=True)
            (out / METADATA_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "images").glob("*/.*.tmp"), *(out / "masks").glob("*/.*.tmp")]:  # left by a killed run
        stale.unlink(missing_ok=True)
    _write_manifest(out, params, complete=False, masks=masks)

    plan = plan_views(liveries, params.per_class, params.seed, params.min_per_type)
    splits = assign_splits(liveries, plan, params.ratios, params.seed)
    # Group jobs by model so a worker reuses its parsed model across liveries.
    ordered = sorted(liveries, key=lambda lv: (str(lv.model_path), lv.key))
    jobs = [
        _Job(lv, list(range(plan[lv.key])), splits[lv.key], str(out), params.seed, params.package, params.views,
             masks)
        for lv in ordered
    ]
    n_total = sum(len(j.views) for j in jobs)
    rows: list[dict[str, str]] = []
    t0 = time.time()
    bar = tqdm(total=n_total, unit="img", desc="render", disable=not progress, smoothing=0.05)
    try:
        if workers <= 1:
            _worker_init(params.size, 0)
            for job in jobs:
                r = _worker_run(job)
                rows.extend(r)
                bar.update(len(r))
        else:
            ctx = mp.get_context("spawn")
            lp = max(1, (os.cpu_count() or 2) // workers)
            with ctx.Pool(workers, initializer=_worker_init, initargs=(params.size, lp)) as pool:
                for r in pool.imap_unordered(_worker_run, jobs, chunksize=1):
                    rows.extend(r)
                    bar.update(len(r))
    finally:
        bar.close()
    rows.sort(key=lambda r: r["image_path"])
    write_rows_atomic(out / METADATA_FILE, rows)
    _write_manifest(out, params, complete=True, n_images=len(rows), masks=masks)
    return {"status": "rendered", **_summary(rows), "seconds": round(time.time() - t0, 2)}


def _summary(rows: list[dict[str, str]]) -> dict:
    return {
        "n_images": len(rows),
        "per_manufacturer": dict(sorted(Counter(r["manufacturer"] for r in rows).items())),
        "per_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "per_type": dict(sorted(Counter(r["icao_type"] for r in rows).items())),
    }


def params_digest(params: RenderParams) -> str:
    """Short sha256 of the parameters (for logs)."""
    return hashlib.sha256(json.dumps(params.as_dict(), sort_keys=True).encode()).hexdigest()[:12]
