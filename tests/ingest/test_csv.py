"""`python -m ingest csv`: any folder + labels CSV → the shared schema, images in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imgfix import photo, save, write_csv

from ingest.__main__ import main
from ingest.core import CACHE_FILE, normalise_labels, normalise_manufacturer
from ingest.csvimport import resolve_columns
from model.data import read_metadata
from dataset.metadata import read_rows
from dataset.images import hamming, sha256_hex
from dataset.schema import COLUMNS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def collection(tmp_path):
    """A small collection: images/<source>/*.jpg and labels.csv (paths relative to images/) with
    other people's column names."""
    root = tmp_path / "coll"
    rows = []
    for k in range(6):  # one Airbus airframe photographed 3 times + 3 others
        p = save(photo(k), root / "images" / "spotterA" / f"a{k}.jpg")
        reg = "D-AIZA" if k < 3 else f"D-AIX{k}"
        rows.append([p.relative_to(root / "images").as_posix(), "airbus", "A320", reg, ""])
    for k in range(6, 10):
        p = save(photo(k), root / "images" / "spotterB" / f"b{k}.jpg")
        rows.append([p.relative_to(root / "images").as_posix(), "The Boeing Company", "737-800", f"N{k}00X", ""])
    for k in range(10, 14):  # family only, no manufacturer: derived from the family
        p = save(photo(k), root / "images" / "spotterB" / f"c{k}.jpg")
        rows.append([p.relative_to(root / "images").as_posix(), "", "", "", "B777"])
    # a near-duplicate: photo 7 again, smaller and re-compressed (other bytes, same picture)
    p = save(photo(7, 120, 83), root / "images" / "spotterB" / "b7_copy.jpg", quality=70)
    rows.append([p.relative_to(root / "images").as_posix(), "Boeing", "B738", "", ""])
    write_csv(root / "labels.csv", ["File", "Maker", "Type", "Reg", "Family"], rows)
    return root


def _run(args, capsys):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_imports_in_place_with_recognised_columns(collection, tmp_path, capsys):
    out = tmp_path / "ds"
    code, stdout, err = _run(["csv", "--labels", collection / "labels.csv", "--images-root", collection / "images",
                            "--out", out, "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0, err
    assert (out / "metadata.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert sorted(p.name for p in out.iterdir()) == ["ingest.json", "metadata.csv"]  # nothing copied
    rows = read_rows(out / "metadata.csv")
    assert len(rows) == 15
    by = {Path(r["image_path"]).name: r for r in rows}
    a0 = by["a0.jpg"]
    assert a0["image_path"] == "../coll/images/spotterA/a0.jpg"
    assert a0["manufacturer"] == "Airbus" and a0["manufacturer_raw"] == "airbus"
    assert a0["family"] == "A320" and a0["source"] == "spotterA" and a0["registration"] == "D-AIZA"
    assert a0["sha256"] == sha256_hex((collection / "images/spotterA/a0.jpg").read_bytes())
    assert (a0["width"], a0["height"]) == ("160", "110") and len(a0["phash"]) == 16
    b6 = by["b6.jpg"]  # "737-800" is no designator: mapped with the crawler's rules
    assert (b6["manufacturer"], b6["icao_type"], b6["family"], b6["type_raw"], b6["sub_model"]) == \
        ("Boeing", "B738", "B737", "737-800", "737-800")
    c = by["c10.jpg"]
    assert (c["manufacturer"], c["icao_type"], c["family"]) == ("Boeing", "", "B777")
    # near-duplicate: flagged, grouped with the original
    copy = by["b7_copy.jpg"]
    assert copy["near_duplicate_of"] == by["b7.jpg"]["image_path"]
    assert hamming(copy["phash"], by["b7.jpg"]["phash"]) <= 6
    assert copy["split"] == by["b7.jpg"]["split"]
    # one airframe, one split
    assert len({by[f"a{k}.jpg"]["split"] for k in range(3)}) == 1
    assert all(r["split"] in ("train", "validation", "test") for r in rows)
    # the training side reads it: abs_path resolves to the original files
    df = read_metadata(out)
    assert all(Path(p).is_file() and Path(p).is_relative_to(collection.resolve()) for p in df["abs_path"])
    assert "spotterA" in stdout and "total" in stdout and "near-duplicate pairs" in stdout


def test_rerun_is_skipped_and_cache_is_used(collection, tmp_path, capsys):
    out, cache = tmp_path / "ds", tmp_path / "cache"
    args = ["csv", "--labels", collection / "labels.csv", "--images-root", collection / "images", "--out", out,
            "--cache-dir", cache]
    assert _run(args, capsys)[0] == 0
    before = (out / "metadata.csv").stat().st_mtime_ns
    code, stdout, _ = _run(args, capsys)
    assert code == 0 and "up to date" in stdout
    assert (out / "metadata.csv").stat().st_mtime_ns == before
    # --force rewrites, and takes pHashes from the cache (keyed by sha256), not from the pixels
    entries = json.loads((cache / CACHE_FILE).read_text())
    sha = sha256_hex((collection / "images/spotterA/a0.jpg").read_bytes())
    entries[sha][2] = "00000000000000ff"
    (cache / CACHE_FILE).write_text(json.dumps(entries))
    assert _run(args + ["--force"], capsys)[0] == 0
    a0 = next(r for r in read_rows(out / "metadata.csv") if r["image_path"].endswith("a0.jpg"))
    assert a0["phash"] == "00000000000000ff"
    # a changed label is a changed input: rewritten without --force
    lab = collection / "labels.csv"
    lab.write_text(lab.read_text().replace("D-AIX3", "D-AIX9"))
    code, stdout, _ = _run(args, capsys)
    assert code == 0 and "up to date" not in stdout
    assert any(r["registration"] == "D-AIX9" for r in read_rows(out / "metadata.csv"))


def test_bad_rows_are_listed_or_skipped(collection, tmp_path, capsys):
    (collection / "images/spotterA/broken.jpg").write_bytes(b"not a jpeg at all")
    lab = collection / "labels.csv"
    lab.write_text(lab.read_text()
                   + "spotterA/missing.jpg,Airbus,A319,,\n"
                   + "spotterA/broken.jpg,Airbus,A319,,\n"
                   + "spotterA/a0.jpg,Lockheed-Boeing,A319,,\n"
                   + "spotterA/a1.jpg,Airbus,B744,,\n")
    out = tmp_path / "ds"
    args = ["csv", "--labels", lab, "--images-root", collection / "images", "--out", out,
            "--cache-dir", tmp_path / "c"]
    code, _, err = _run(args, capsys)
    assert code == 2
    assert "4 of 19 rows cannot be imported" in err
    assert "labels.csv line 17: " in err and "image file not found" in err
    assert "line 18" in err and "unreadable image" in err
    assert "line 19" in err and "unknown manufacturer 'Lockheed-Boeing'" in err
    assert "line 20" in err and "contradicts" in err
    assert not (out / "metadata.csv").exists()
    code, stdout, _ = _run(args + ["--skip-bad"], capsys)
    assert code == 0 and "skipped 4 bad rows" in stdout
    assert len(read_rows(out / "metadata.csv")) == 15


def test_source_option_columns_override_and_given_splits(tmp_path, capsys):
    root = tmp_path / "flat"
    rows = []
    for k in range(8):
        save(photo(100 + k), root / f"p{k}.jpg")
        rows.append([f"p{k}.jpg", "A388", "test" if k == 0 else ("val" if k == 1 else ""), "x"])
    write_csv(root / "meta.csv", ["pic", "designator", "subset", "type"], rows)
    out = tmp_path / "ds"
    # both 'designator' and 'type' are there: 'designator' is tried first; 'subset' is the split
    code, _, _ = _run(["csv", "--labels", root / "meta.csv", "--out", out, "--source", "mine",
                       "--column", "image_path=pic", "--cache-dir", tmp_path / "c"], capsys)
    assert code == 0
    rows = read_rows(out / "metadata.csv")
    assert {r["source"] for r in rows} == {"mine"} and {r["manufacturer"] for r in rows} == {"Airbus"}
    assert rows[0]["split"] == "test" and rows[1]["split"] == "validation"
    code, _, _ = _run(["csv", "--labels", root / "meta.csv", "--out", out, "--column", "image_path=pic",
                       "--resplit", "--seed", "1", "--cache-dir", tmp_path / "c"], capsys)
    assert code == 0
    splits = [r["split"] for r in read_rows(out / "metadata.csv")]
    assert set(splits) == {"train", "validation", "test"}  # 8 photos, 8 groups: all three splits


def test_cli_errors(tmp_path):
    write_csv(tmp_path / "x.csv", ["name", "label"], [["a.jpg", "Airbus"]])
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ingest", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    r = cli("csv", "--labels", tmp_path / "x.csv", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no image path column" in r.stderr and "--column image_path=" in r.stderr
    r = cli("csv", "--labels", tmp_path / "x.csv", "--out", tmp_path / "o", "--column", "image_path=name")
    assert r.returncode == 2 and "no label column" in r.stderr
    r = cli("csv", "--labels", tmp_path / "x.csv", "--out", tmp_path / "o", "--column", "colour=label")
    assert r.returncode == 2 and "'colour' is not a schema column" in r.stderr
    r = cli("csv", "--labels", tmp_path / "nope.csv", "--out", tmp_path / "o")
    assert r.returncode == 2 and "labels CSV not found" in r.stderr
    r = cli("csv", "--labels", tmp_path / "x.csv", "--out", tmp_path / "o", "--fractions", "0.5", "0.5", "0.5")
    assert r.returncode == 2 and "--fractions" in r.stderr
    r = cli("csv")
    assert r.returncode == 2 and "--labels" in r.stderr


def test_label_normalisation_rules():
    assert normalise_manufacturer(" BOEING ") == "Boeing"
    assert normalise_manufacturer("Embraer") == "Other" and normalise_manufacturer("") == ""
    with pytest.raises(ValueError, match="unknown manufacturer"):
        normalise_manufacturer("Boeingg")
    row = {"manufacturer": "", "icao_type": "b77w", "family": ""}
    assert normalise_labels(row) == [] and row["manufacturer"] == "Boeing" and row["family"] == "B777"
    row = {"manufacturer": "Other", "icao_type": "", "family": "A320"}
    assert "contradicts" in normalise_labels(row)[0]
    row = {"manufacturer": "Airbus", "icao_type": "", "family": "A999"}
    assert "unknown Airbus family" in normalise_labels(row)[0]
    row = {"manufacturer": "", "icao_type": "E190", "family": ""}
    assert "no manufacturer" in normalise_labels(row)[0]
    row = {"manufacturer": "Embraer", "icao_type": "E190", "family": ""}
    assert normalise_labels(row) == [] and row["manufacturer"] == "Other"
    assert resolve_columns(["Image", "ICAO", "License"]) == {"image_path": "Image", "icao_type": "ICAO",
                                                              "licence": "License"}
