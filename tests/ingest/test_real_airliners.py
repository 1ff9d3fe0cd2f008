"""`python -m ingest real-airliners`: the preset, on a look-alike fixture and on the real folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from imgfix import photo, save, with_banner, write_csv

from ingest.__main__ import main
from ingest.real_airliners import LABELS_COLUMNS, parse_source_label
from model.data import read_metadata
from dataset.metadata import read_rows
from dataset.images import sha256_hex

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("REAL_DATA") or REPO / ".." / "shared" / "data" / "real-airliners").resolve()

ARK = "arkhesiae-alys2-fgvc"
TRIT = "tritinvo18-fgvc-subset20"
DAVID = "davidnh8-airplane-pictures"
BURAK = "burakkurt07-civil-military"
NOTE = {ARK: "FGVC-Aircraft / airliners.net photos. Original 20-px credit banner kept at bottom.",
        TRIT: "FGVC-Aircraft 2013b images; banner already cropped by the repo author.",
        DAVID: "airplane-pictures.net thumbnails; copyright photographers.",
        BURAK: "web images, 224x224; evaluation/research use only."}


def _label_row(root, rel, manufacturer, icao, family, reg, label, repo="someone/repo"):
    p = root / rel
    from PIL import Image
    with Image.open(p) as im:
        w, h = im.size
    source = Path(rel).parts[1]
    return [rel, sha256_hex(p.read_bytes()), manufacturer, icao, family, reg, repo, "c0ffee" * 6 + "abcd",
            "/".join(Path(rel).parts[2:]), str(w), str(h), NOTE[source], label]


@pytest.fixture()
def real_like(tmp_path):
    """A folder shaped like ../shared/data/real-airliners: labels.csv + images/<source>/…"""
    root = tmp_path / "real-airliners"
    rows = []
    # FGVC photos with the 20-px banner; photo 1 is also in the tritinvo set, banner cropped
    for k, (variant, icao, fam, maker) in enumerate([("A340-200", "A342", "A340", "Airbus"),
                                                     ("747-200", "B742", "B747", "Boeing"),
                                                     ("Boeing 717", "B712", "B717", "Boeing")]):
        rel = f"images/{ARK}/src/assets/Images/00{k}0001.jpg"
        save(with_banner(photo(k, 200, 130)), root / rel, quality=95)
        rows.append(_label_row(root, rel, maker, icao, fam, "",
                               f"FGVC-Aircraft variant: {variant} (id 00{k}0001; imagesRef.js name field)"))
    for k in range(3):
        rel = f"images/{TRIT}/FGVCAircraft_Subset20/trainval/class_00/img_000{k}.jpg"
        save(photo(1 if k == 0 else 10 + k, 200, 130), root / rel, quality=92)
        rows.append(_label_row(root, rel, "Boeing", "B742", "B747", "",
                               "FGVC-Aircraft variant 747-200 (anonymous class_00; identified by pixel-exact "
                               "match of 3 images to alys2 labelled FGVC ids)"))
    # airplane-pictures.net: 12 photos of 5 airframes
    regs = ["EI-FIC", "EI-FIC", "EI-FIC", "SP-LWA", "SP-LWA", "D-ABYM", "D-ABYM", "D-ABYM", "D-ABYM",
            "G-JZBN", "UR-CQW", "UR-CQW"]
    for k, reg in enumerate(regs):
        rel = f"images/{DAVID}/planes/b737/pg={k}_1.jpg"
        save(photo(20 + k, 140, 93), root / rel)
        typ, icao, fam = {"D-ABYM": ("Lufthansa Boeing 747-8", "B748", "B747"),
                          "SP-LWA": ("LOT - Polish Airlines Boeing 737-8 MAX", "B38M", "B737")}.get(
            reg, ("Ryanair Boeing 737-8AS(WL)", "B738", "B737"))
        rows.append(_label_row(root, rel, "Boeing", icao, fam, reg, f"airplane-pictures.net title: {reg} - {typ}"))
    # web images, family only: 4 A220 photos (4 groups: one per split at least)
    for k in range(4):
        rel = f"images/{BURAK}/train/civil/Airbus_A220/civil_{k}.jpg"
        save(photo(40 + k, 224, 224), root / rel)
        rows.append(_label_row(root, rel, "Airbus", "", "A220", "", "folder: Airbus A220"))
    write_csv(root / "labels.csv", list(LABELS_COLUMNS), rows)
    return root


def test_preset_on_a_look_alike_folder(real_like, tmp_path, capsys):
    out = tmp_path / "data" / "raw" / "real-airliners"
    code = main(["real-airliners", "--root", str(real_like), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")])
    stdout = capsys.readouterr().out
    assert code == 0
    rows = read_rows(out / "metadata.csv")
    assert len(rows) == 22
    by = {r["image_path"].split("images/", 1)[1]: r for r in rows}
    assert {r["source"] for r in rows} == {ARK, TRIT, DAVID, BURAK}
    for rel, r in by.items():
        assert r["licence"] == NOTE[r["source"]] and r["airline"] == ""
        assert (out / r["image_path"]).resolve() == (real_like / "images" / rel).resolve()
        if r["source"] == ARK:
            assert r["crop_box"] == f"0 0 {r['width']} {int(r['height']) - 20}" and r["height"] == "150"
        else:
            assert r["crop_box"] == ""
    ark1 = by[f"{ARK}/src/assets/Images/0010001.jpg"]
    assert (ark1["type_raw"], ark1["sub_model"], ark1["icao_type"]) == ("747-200", "747-200", "B742")
    assert ark1["source_id"] == "src/assets/Images/0010001.jpg"
    assert ark1["page_url"] == f"https://github.com/someone/repo/blob/{'c0ffee' * 6}abcd/src/assets/Images/0010001.jpg"
    assert by[f"{ARK}/src/assets/Images/0020001.jpg"]["sub_model"] == "717-200"
    # the same FGVC photo in two sources (one with the banner): found through the cropped pHash
    trit0 = by[f"{TRIT}/FGVCAircraft_Subset20/trainval/class_00/img_0000.jpg"]
    assert trit0["near_duplicate_of"] == ark1["image_path"] and trit0["split"] == ark1["split"]
    lot = next(r for r in rows if r["registration"] == "SP-LWA")
    assert (lot["type_raw"], lot["sub_model"], lot["icao_type"]) == ("Boeing 737-8 MAX", "737 MAX 8", "B38M")
    ry = next(r for r in rows if r["registration"] == "EI-FIC")
    assert (ry["type_raw"], ry["sub_model"]) == ("Boeing 737-8AS(WL)", "737-800")
    a220 = [r for r in rows if r["family"] == "A220"]
    assert {r["split"] for r in a220} == {"train", "validation", "test"}
    assert {(r["type_raw"], r["sub_model"], r["icao_type"]) for r in a220} == {("Airbus A220", "A220", "")}
    split_of = defaultdict(set)
    for r in rows:
        if r["registration"]:
            split_of[r["registration"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    for src in (ARK, TRIT, DAVID, BURAK):
        assert src in stdout


def test_defaults_from_the_environment(real_like, tmp_path):
    """No --root/--out: $REAL_DATA and data/raw/real-airliners under the cwd; a rerun is skipped."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "REAL_DATA": str(real_like)}
    run = [sys.executable, "-m", "ingest", "real-airliners"]
    r = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    csv = tmp_path / "data" / "raw" / "real-airliners" / "metadata.csv"
    assert len(read_metadata(csv)) == 22
    assert (tmp_path / "data" / "processed" / "ingest-image-info.json").is_file()
    r = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "up to date" in r.stdout
    env["REAL_DATA"] = str(tmp_path / "nowhere")
    r = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no labels.csv in" in r.stderr and "REAL_DATA" in r.stderr


@pytest.mark.parametrize("label, maker, icao, want", [
    ("airplane-pictures.net title: N850GT - Boeing Company Boeing 747-8", "Boeing", "B748",
     ("Boeing 747-8", "747-8")),
    ("airplane-pictures.net title: LX-VCH - Cargolux Boeing 747-8F", "Boeing", "B748", ("Boeing 747-8F", "747-8F")),
    ("FGVC-Aircraft variant 777-300 (anonymous class_03; x)", "Boeing", "", ("777-300", "777-300")),
    ("alys2 imagesRef label (airliners.net id, not FGVC): A350-1000 (id 6454431; y)", "Airbus", "A35K",
     ("A350-1000", "A350-1000")),
    ("folder: Boeing 737 max", "Boeing", "", ("Boeing 737 max", "737 max")),
    ("something else", "Boeing", "B738", ("something else", "")),
])
def test_parse_source_label(label, maker, icao, want):
    assert parse_source_label(label, maker, icao) == want


@pytest.mark.skipif(not (REAL / "labels.csv").is_file(), reason=f"no real-airliners folder at {REAL}")
def test_imports_the_real_folder(tmp_path, capsys):
    out = tmp_path / "real"
    t0 = time.monotonic()
    code = main(["real-airliners", "--root", str(REAL), "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    seconds = time.monotonic() - t0
    stdout = capsys.readouterr().out
    assert code == 0
    assert seconds < 60, f"import took {seconds:.0f} s"
    assert sorted(p.name for p in out.iterdir()) == ["ingest.json", "metadata.csv"]  # nothing copied
    df = read_metadata(out)
    assert len(df) == 4661
    assert all(Path(p).is_file() and Path(p).is_relative_to(REAL) for p in df["abs_path"])
    assert set(df["split"]) == {"train", "validation", "test"}
    reg = df[df["registration"] != ""].groupby("registration")["split"].nunique()
    assert (reg == 1).all()
    # near-duplicates sit with the row they duplicate (transitively: the whole group shares a split)
    split_of = dict(zip(df["image_path"], df["split"]))
    dups = df[df["near_duplicate_of"] != ""]
    assert len(dups) > 0 and all(split_of[o] == s for o, s in zip(dups["near_duplicate_of"], dups["split"]))
    ark = df[df["source"] == ARK]
    assert len(ark) == 91 and (ark["crop_box"] != "").all()
    assert (df.loc[df["source"] != ARK, "crop_box"] == "").all()
    for fam in ("A220", "A300", "A310", "B717", "B727"):  # small families: photos in every split
        assert set(df.loc[df["family"] == fam, "split"]) == {"train", "validation", "test"}, fam
    assert "tritinvo18-fgvc-subset20" in stdout
    # re-run: up to date, fast
    t0 = time.monotonic()
    assert main(["real-airliners", "--root", str(REAL), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "up to date" in capsys.readouterr().out and time.monotonic() - t0 < 10
