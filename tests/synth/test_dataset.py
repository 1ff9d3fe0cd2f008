"""The dataset writer and the CLI, end to end on the real package (tiny renders)."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from collections import Counter, defaultdict

import pytest
from PIL import Image

from dataset.schema import COLUMNS, SPLITS
from synth.__main__ import main
from synth.dataset import assign_splits, plan_views, select_liveries
from synth.fleet import airline_group

TINY = ["--per-class", "6", "--types", "A320,A319,B738,B744", "--max-liveries-per-type", "3", "--size", "64",
        "--no-progress"]


def _read(out):
    with open(out / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, fleet_root):
    out = tmp_path_factory.mktemp("synth") / "ds"
    assert main(["render", "--fleet", str(fleet_root), "--out", str(out), "--workers", "1", *TINY]) == 0
    return out


def test_csv_schema_and_images(tiny):
    cols, rows = _read(tiny)
    assert tuple(cols) == COLUMNS
    assert len(rows) == 12
    for r in rows:
        p = tiny / r["image_path"]
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (64, 64)
            assert (r["width"], r["height"]) == ("64", "64")
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 30  # not uniform
        assert r["image_path"].startswith(f"images/{r['icao_type']}/")
        assert r["source"] == "flightgear" and r["licence"] == "GPL-2.0-or-later"
        assert "flightgear-data-ai" in r["attribution"]
        assert len(r["phash"]) == 16 and r["split"] in SPLITS
        folder, livery, view = r["source_id"].split("/")
        assert view.isdigit()


def test_classes_balanced_and_splits_by_livery(tiny):
    _, rows = _read(tiny)
    assert Counter(r["manufacturer"] for r in rows) == {"Airbus": 6, "Boeing": 6}
    split_of = defaultdict(set)
    for r in rows:
        split_of[r["source_id"].rsplit("/", 1)[0]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())


def test_rerun_is_noop_and_changed_args_rerender(tiny, fleet_root):
    _, before = _read(tiny)
    mtimes = {r["image_path"]: (tiny / r["image_path"]).stat().st_mtime_ns for r in before}
    assert main(["render", "--fleet", str(fleet_root), "--out", str(tiny), "--workers", "1", *TINY]) == 0
    assert {p: (tiny / p).stat().st_mtime_ns for p in mtimes} == mtimes
    # Two workers (one EGL context each) and a new seed: re-rendered, different pixels.
    assert main(["render", "--fleet", str(fleet_root), "--out", str(tiny), "--workers", "2", "--seed", "1",
                 *TINY]) == 0
    _, after = _read(tiny)
    assert len(after) == 12
    assert {r["sha256"] for r in after}.isdisjoint({r["sha256"] for r in before})
    assert all((tiny / r["image_path"]).is_file() for r in after)


def test_splits_full_fleet(scan_all):
    lv = [x for x in scan_all.liveries if x.manufacturer in ("Airbus", "Boeing")]
    plan = plan_views(lv, 2500, seed=0)
    totals = Counter()
    for x in lv:
        totals[x.manufacturer] += plan[x.key]
    assert totals == {"Airbus": 2500, "Boeing": 2500}
    assert min(plan.values()) >= 1
    splits = assign_splits(lv, plan, seed=0)
    group_splits = defaultdict(set)
    for x in lv:
        group_splits[airline_group(x)].add(splits[x.key])
    assert all(len(s) == 1 for s in group_splits.values())
    images = Counter(splits[x.key] for x in lv for _ in range(plan[x.key]))
    for s, r in zip(SPLITS, (0.7, 0.15, 0.15)):
        assert abs(images[s] / 5000 - r) < 0.03
    for s in SPLITS:
        assert {x.manufacturer for x in lv if splits[x.key] == s} == {"Airbus", "Boeing"}
    types = {x.icao_type for x in lv}
    for s in ("validation", "test"):
        covered = {x.icao_type for x in lv if splits[x.key] == s}
        assert len(covered) >= len(types) - 3


def test_select_liveries_cap(scan_all):
    lv = select_liveries(scan_all.liveries, ("A320", "B738"), 5, seed=0)
    assert Counter(x.icao_type for x in lv) == {"A320": 5, "B738": 5}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "synth", *args], capture_output=True, text=True)


def test_cli_errors(tmp_path, fleet_root):
    r = _cli("render", "--fleet", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not found" in r.stderr
    r = _cli("render", "--fleet", str(fleet_root), "--out", str(tmp_path / "o"), "--types", "XX99")
    assert r.returncode == 2 and "unknown ICAO type" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    r = _cli("render", "--fleet", str(fleet_root), "--out", str(tmp_path / "full"), "--types", "A320")
    assert r.returncode == 2 and "refusing" in r.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    r = _cli("render", "--per-class", "0")
    assert r.returncode == 2 and "per-class" in r.stderr
    r = _cli("--help")
    assert r.returncode == 0 and "fetch" in r.stdout and "render" in r.stdout


def test_plan_min_per_type(scan_all):
    lv = [x for x in scan_all.liveries if x.manufacturer in ("Airbus", "Boeing")]
    plan = plan_views(lv, 2500, seed=0, min_per_type=60)
    per_class, per_type = Counter(), Counter()
    for x in lv:
        per_class[x.manufacturer] += plan[x.key]
        per_type[x.icao_type] += plan[x.key]
    assert per_class == {"Airbus": 2500, "Boeing": 2500}
    assert min(per_type.values()) >= 60
    assert per_type["A320"] > per_type["A342"]
    # Without the floor, types follow their livery counts (A342 has 4 liveries).
    plain = plan_views(lv, 2500, seed=0)
    assert sum(plain[x.key] for x in lv if x.icao_type == "A342") < 60


def test_contact_sheet(tiny, tmp_path):
    png = tmp_path / "sheet.png"
    assert main(["sheet", "--data", str(tiny), "--out", str(png), "--n", "7"]) == 0
    with Image.open(png) as im:
        assert im.size == (6 * 256, 2 * 256)
        assert im.convert("L").getextrema()[1] > 100
