"""Masks written by `synth render` and `synth composite` end to end (real tiny renders, generated photos)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dataset.metadata import write_rows_atomic
from dataset.schema import COLUMNS, empty_row
from synth.__main__ import main
from synth.composite import (
    FILL,
    HORIZON,
    MARGIN,
    Background,
    composite_image,
    open_photo,
    plan_placement,
    scan_backgrounds,
    train_backgrounds,
)
from synth.dataset import mask_relpath, view_rng

TINY = ["--per-class", "4", "--types", "A320,B738", "--max-liveries-per-type", "2", "--size", "64", "--no-progress"]
MAGENTA = (235, 20, 235)


def _read(folder: Path):
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _files(folder: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted((folder / sub).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def renders(tmp_path_factory, fleet_root):
    """Tiny renders with masks (8 images, 64 px)."""
    out = tmp_path_factory.mktemp("renders") / "synth"
    assert main(["render", "--fleet", str(fleet_root), "--out", str(out), "--workers", "1", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def renders_no_masks(tmp_path_factory, fleet_root):
    out = tmp_path_factory.mktemp("renders") / "synth-nomask"
    assert main(["render", "--fleet", str(fleet_root), "--out", str(out), "--workers", "1", "--no-masks", *TINY]) == 0
    return out


def _photo(rng: np.random.Generator, sky: tuple, ground: tuple, w: int = 160, h: int = 120,
           banner: int = 0, busy_sky: bool = False) -> Image.Image:
    """A stand-in spotter photo: smooth sky gradient, a white 'aircraft' in the middle, textured ground."""
    a = np.zeros((h, w, 3), np.float32)
    t = np.linspace(0, 1, h)[:, None, None]
    a[:] = np.asarray(sky, np.float32) * (0.85 + 0.15 * t)
    gy = int(h * 0.7)
    a[gy:] = np.asarray(ground, np.float32) + rng.normal(0, 12, (h - gy, w, 1))
    a[int(h * 0.4):int(h * 0.6), int(w * 0.2):int(w * 0.8)] = (245, 245, 245)  # the photo's own aircraft
    if busy_sky:  # sharp high-contrast pattern over the whole top: must be rejected as a sky band
        yy, xx = np.mgrid[0:int(h * 0.35), 0:w]
        a[: int(h * 0.35)] = np.where(((yy // 3 + xx // 3) % 2)[..., None] == 0, 20.0, 240.0)
    if banner:
        a[h - banner:] = MAGENTA
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory):
    """A generated real-photo dataset: 8 train photos (one with a magenta banner cut by crop_box,
    one with an edge-dense sky), 3 validation and 3 test photos that are all magenta."""
    root = tmp_path_factory.mktemp("bg")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    specs = [("train", (90, 140, 220), (70, 120, 50))] * 6 + [("validation", MAGENTA, MAGENTA)] * 3 + [
        ("test", MAGENTA, MAGENTA)] * 3
    for i, (split, sky, ground) in enumerate(specs):
        im = _photo(rng, sky, ground, banner=12 if i == 0 else 0)
        path = photos / f"p{i:02d}.jpg"
        im.save(path, quality=92)
        r = empty_row()
        r.update(image_path=f"photos/{path.name}", split=split, source="testbg", source_id=f"{split}-{i:02d}",
                 manufacturer="Boeing", attribution=f"photographer {i}", width=str(im.width), height=str(im.height),
                 sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                 crop_box=f"0 0 {im.width} {im.height - 12}" if i == 0 else "")
        rows.append(r)
    for j in range(2):  # two more train photos: one with a busy (rejected) sky, one plain
        i = len(rows)
        im = _photo(rng, (150, 170, 200), (110, 100, 90), busy_sky=(j == 0))
        path = photos / f"p{i:02d}.jpg"
        im.save(path, quality=92)
        r = empty_row()
        r.update(image_path=f"photos/{path.name}", split="train", source="testbg",
                 source_id=("busy-" if j == 0 else "train-") + f"{i:02d}", width="160", height="120")
        rows.append(r)
    write_rows_atomic(root / "metadata.csv", rows)
    return root


# ------------------------------------------------------------------------------------------
# masks


def test_masks_written_and_consistent_with_images(renders, fleet_root):
    from synth.fleet import scan_fleet
    from synth.render import Renderer, degrade, encode_jpeg, sample_view

    _, rows = _read(renders)
    assert len(rows) == 8
    manifest = json.loads((renders / "manifest.json").read_text())
    assert manifest["masks"] is True
    by_key = {lv.key: lv for lv in scan_fleet(fleet_root).liveries}
    renderer = Renderer(64)
    for r in rows:
        mpath = renders / mask_relpath(r["image_path"])
        assert mpath.parent.parent.name == "masks" and mpath.suffix == ".png"
        with Image.open(mpath) as m:
            assert m.format == "PNG" and m.mode == "L" and m.size == (64, 64)
            mask = np.asarray(m)
        with Image.open(renders / r["image_path"]) as im:
            img = np.asarray(im.convert("RGB")).astype(np.float32)
        assert mask.max() == 255 and mask.min() == 0
        assert 0.02 < (mask > 127).mean() < 0.9
        # The aircraft is where the image differs from the sky: estimate the sky under the
        # aircraft from the pixels the mask calls background (normalised blur, which follows
        # clouds and the horizon); pixels
        # far from that estimate must be aircraft (mask > 0, allowing 2 px of render blur).
        bgw = (mask == 0).astype(np.float32)

        def blur(a, r=3, passes=2):  # repeated box blur ~ Gaussian (sigma ~ 3 px), edges clamped
            for _ in range(passes):
                for ax in (0, 1):
                    p = np.pad(a, [(r + 1, r) if i == ax else (0, 0) for i in range(2)], mode="edge")
                    c = np.cumsum(p, axis=ax)
                    a = (np.take(c, range(2 * r + 1, c.shape[ax]), axis=ax) - np.take(c, range(0, c.shape[ax] - 2 * r - 1), axis=ax)) / (2 * r + 1)
            return a

        sky = np.stack([blur(img[..., c] * bgw) for c in range(3)], -1) / np.maximum(blur(bgw), 1e-3)[..., None]
        differs = np.abs(img - sky).max(-1) > 45
        near = np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(5))) > 0
        assert differs.sum() > 20, r["image_path"]
        assert (differs & ~near).sum() <= 0.01 * differs.sum(), r["image_path"]
        assert (differs & (mask > 127)).sum() >= 0.1 * (mask > 127).sum(), r["image_path"]
        # ... and the mask is the image's own: the same view rendered again gives both back.
        folder, livery_id, view = r["source_id"].split("/")
        rng = view_rng(0, f"{folder}/{livery_id}", int(view))
        vp = sample_view(rng, "spotter")
        raw, mask2 = renderer.render(by_key[f"{folder}/{livery_id}"], vp, return_mask=True)
        assert np.array_equal(mask2, mask)
        assert encode_jpeg(degrade(raw, vp, rng), vp.jpeg_quality) == (renders / r["image_path"]).read_bytes()


def test_masks_leave_images_and_csv_unchanged(renders, renders_no_masks, fleet_root):
    assert (renders / "metadata.csv").read_bytes() == (renders_no_masks / "metadata.csv").read_bytes()
    assert _files(renders, "images") == _files(renders_no_masks, "images")
    assert not (renders_no_masks / "masks").exists()


def test_masks_added_to_an_existing_render_keep_its_images(renders, tmp_path, fleet_root):
    import shutil

    out = tmp_path / "upgrade"
    shutil.copytree(renders, out)
    shutil.rmtree(out / "masks")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg")}
    assert main(["render", "--fleet", str(fleet_root), "--out", str(out), "--workers", "1", "--no-masks", *TINY]) == 0
    assert not (out / "masks").exists()  # complete without masks: nothing to do
    assert main(["render", "--fleet", str(fleet_root), "--out", str(out), "--workers", "1", *TINY]) == 0
    assert _files(out, "masks") == _files(renders, "masks")
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


# ------------------------------------------------------------------------------------------
# composite


def _composite(renders, backgrounds, out, *extra):
    return main(["composite", "--renders", str(renders), "--backgrounds", str(backgrounds), "--out", str(out),
                 "--size", "64", "--workers", "1", "--no-progress", *extra])


@pytest.fixture(scope="module")
def composites(renders, backgrounds, tmp_path_factory):
    out = tmp_path_factory.mktemp("comp") / "synth-composite"
    assert _composite(renders, backgrounds, out, "--per-render", "3") == 0
    return out


def test_composite_rows_keep_labels_and_schema(composites, renders):
    cols, rows = _read(composites)
    assert tuple(cols) == COLUMNS
    _, rrows = _read(renders)
    by_sid = {r["source_id"]: r for r in rrows}
    assert len(rows) == 3 * len(rrows)
    seen = set()
    for r in rows:
        data = (composites / r["image_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        with Image.open(composites / r["image_path"]) as im:
            assert im.format == "JPEG" and im.size == (64, 64) and (r["width"], r["height"]) == ("64", "64")
        with Image.open(composites / mask_relpath(r["image_path"])) as m:
            assert m.mode == "L" and m.size == (64, 64) and np.asarray(m).max() > 200
        render_sid, _, bg = r["source_id"].partition("|")
        sid, _, k = render_sid.rpartition("#")
        src = by_sid[sid]
        seen.add((sid, k))
        for c in ("manufacturer", "icao_type", "sub_model", "airline", "split", "family", "manufacturer_raw", "type_raw"):
            assert r[c] == src[c], c
        assert r["image_path"] == src["image_path"][:-4] + f"_c{k}.jpg"
        assert r["source"] == "flightgear-composite"
        assert bg.startswith("testbg:")
        assert src["attribution"] in r["attribution"] and bg.split(":", 1)[1] in r["attribution"]
        assert "GPL-2.0-or-later" in r["licence"] and "internal training only" in r["licence"]
        assert len(r["phash"]) == 16
    assert len(seen) == len(rows)
    assert {r["split"] for r in rows} == {r["split"] for r in rrows}


def test_composite_backgrounds_only_from_train_photos(composites, backgrounds):
    _, rows = _read(composites)
    used = {r["source_id"].split("|testbg:")[1] for r in rows}
    assert used and all(u.startswith("train-") for u in used), used  # never validation/test, never the busy sky
    # No background pixel is magenta (validation/test photos, the train photo's cropped banner).
    for r in rows:
        with Image.open(composites / r["image_path"]) as im:
            a = np.asarray(im.convert("RGB")).astype(int)
        with Image.open(composites / mask_relpath(r["image_path"])) as m:
            bgpix = a[np.asarray(m) == 0]
        magenta = (bgpix[:, 0] > 150) & (bgpix[:, 2] > 150) & (bgpix[:, 1] < 100)
        assert magenta.sum() == 0, r["image_path"]
    assert {b.source_id for b in train_backgrounds(backgrounds)} == {
        "train-00", "train-01", "train-02", "train-03", "train-04", "train-05", "busy-12", "train-13"}
    manifest = json.loads((composites / "manifest.json").read_text())
    assert manifest["complete"] and manifest["backgrounds"]["train_photos"] == 8
    assert manifest["backgrounds"]["sky_accepted"] == 7  # the busy sky is rejected


def test_composite_is_deterministic_idempotent_and_resumes(composites, renders, backgrounds, tmp_path):
    again = tmp_path / "again"
    assert _composite(renders, backgrounds, again, "--per-render", "3") == 0
    assert (again / "metadata.csv").read_bytes() == (composites / "metadata.csv").read_bytes()
    assert _files(again, "images") == _files(composites, "images")
    # unchanged re-run: nothing written
    mtimes = {p: p.stat().st_mtime_ns for p in (again / "images").rglob("*.jpg")}
    assert _composite(renders, backgrounds, again, "--per-render", "3") == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # interrupted run: missing images are made again, identical
    gone = sorted(mtimes)[:5]
    for p in gone:
        p.unlink()
    m = json.loads((again / "manifest.json").read_text())
    m["complete"] = False
    (again / "manifest.json").write_text(json.dumps(m))
    assert _composite(renders, backgrounds, again, "--per-render", "3") == 0
    assert _files(again, "images") == _files(composites, "images")
    # another seed: other composites
    other = tmp_path / "seed1"
    assert _composite(renders, backgrounds, other, "--per-render", "3", "--seed", "1") == 0
    _, a = _read(composites)
    _, b = _read(other)
    assert {r["sha256"] for r in a}.isdisjoint({r["sha256"] for r in b})


def test_composite_errors(renders_no_masks, renders, backgrounds, tmp_path, capsys):
    assert _composite(renders_no_masks, backgrounds, tmp_path / "o1") == 2
    assert "re-run `python -m synth render --masks`" in capsys.readouterr().err
    no_train = tmp_path / "bg-no-train"
    _, rows = _read(backgrounds)
    rows = [r for r in rows if r["split"] != "train"]
    write_rows_atomic(no_train / "metadata.csv", rows)
    assert _composite(renders, no_train, tmp_path / "o2") == 2
    assert "no train rows" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert _composite(renders, backgrounds, tmp_path / "full") == 2
    assert "refusing" in capsys.readouterr().err
    assert _composite(renders, tmp_path / "nope", tmp_path / "o3") == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# placement and pasting


def test_placement_large_in_frame_and_ground_rules():
    rng = np.random.default_rng(0)
    size = 256
    for i in range(300):
        bw, bh = int(rng.integers(60, 250)), int(rng.integers(20, 120))
        sky_only, on_ground = bool(i % 3 == 0), bool(i % 2 == 0)
        pl = plan_placement((bw, bh), size, rng, sky_only, on_ground)
        w, h = bw * pl.scale, bh * pl.scale
        assert FILL[0] * size * 0.9 ** 3 <= max(w, h) <= FILL[1] * size + 1e-6
        m = MARGIN * size - 1
        assert pl.left >= m and pl.top >= m and pl.left + w <= size - m + 1 and pl.top + h <= size - m + 1
        if sky_only:
            assert pl.horizon is None
        else:
            assert (HORIZON[0] - 0.1) * size - 1 <= pl.horizon <= (HORIZON[1] + 0.05) * size + 1
            bottom = pl.top + h
            lo, hi = (-0.02, 0.12) if on_ground else (-0.10, 0.0)
            assert lo * size - 2 <= bottom - pl.horizon <= hi * size + 2
    fills = []
    for _ in range(400):
        pl = plan_placement((200, 60), size, rng, True, False)
        fills.append(200 * pl.scale / size)
    assert FILL[0] - 1e-9 <= min(fills) and max(fills) <= FILL[1] + 1e-9 and np.mean(fills) > 0.78


def test_composite_never_mirrors_and_feathers():
    """An asymmetric 'aircraft' (mass on the right) stays right-heavy; its edge is soft."""
    img = np.full((64, 64, 3), (90, 140, 220), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[28:36, 8:56] = 255  # fuselage
    mask[14:28, 44:54] = 255  # fin at the right end
    img[mask > 0] = (250, 250, 250)
    photo = _photo(np.random.default_rng(1), (90, 140, 220), (70, 120, 50), w=160, h=120)
    bg = Background("p.jpg", "p.jpg", "t", "t", "", "", None, sky=(0, 160), ground=(0, 160))
    for seed in range(6):
        rgb, alpha, pl = composite_image(img, mask, photo, bg, 128, np.random.default_rng(seed), seed % 2 == 0, True)
        assert rgb.shape == (128, 128, 3) and alpha.shape == (128, 128)
        ys, xs = np.nonzero(alpha > 127)
        mid = (xs.min() + xs.max()) / 2
        top_xs = xs[ys < ys.min() + 0.25 * (ys.max() - ys.min())]  # the fin: the highest part
        assert top_xs.mean() > mid
        assert 0 < ((alpha > 0) & (alpha < 255)).sum()  # feathered edge
        assert xs.max() - xs.min() + 1 >= 0.55 * 128  # large in the frame


def test_scan_rejects_busy_sky_and_sky_ground(backgrounds):
    usable, stats = scan_backgrounds(train_backgrounds(backgrounds), workers=1)
    ids = {b.source_id for b in usable}
    assert "busy-12" not in ids and len(ids) == 7
    assert all(b.ground is not None for b in usable)  # green/brown textured ground bands
    assert stats["train_photos"] == 8 and stats["unreadable"] == 0
    # crop_box applied before cutting bands: the magenta banner of train-00 is gone
    banner = next(b for b in usable if b.source_id == "train-00")
    a = np.asarray(open_photo(banner)).astype(int)
    assert a.shape == (108, 160, 3)
    assert not ((a[..., 0] > 150) & (a[..., 2] > 150) & (a[..., 1] < 100)).any()
