"""`python -m ingest other-aircraft`: other makers' photos as manufacturer Other, one FGVC source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imgfix import photo, save, write_csv

from ingest.__main__ import main
from ingest.other_aircraft import SOURCE
from ingest.real_airliners import LABELS_COLUMNS
from model.data import read_metadata
from model.training.sources import origin_of
from dataset.images import sha256_hex

REPO = Path(__file__).resolve().parents[2]
OTHER = Path(os.environ.get("OTHER_DATA") or REPO / ".." / "shared" / "data" / "other-aircraft").resolve()


@pytest.fixture()
def other_like(tmp_path):
    root = tmp_path / "other-aircraft"
    rows = []
    for c in range(3):
        for k in range(4):
            rel = f"images/class_{c + 6:02d}/img_{k:04d}.jpg"
            save(photo(100 + 10 * c + k, 180, 120), root / rel)
            p = root / rel
            rows.append([rel, sha256_hex(p.read_bytes()), "Other", "", "", "", "tritinvo18/aircraft_classification",
                         "6f76" * 10, f"FGVCAircraft_Subset20/trainval/class_{c + 6:02d}/img_{k:04d}.jpg", "180", "120",
                         "FGVC-Aircraft 2013b photos: non-commercial research use only. Banner already cropped.",
                         f"FGVC-Aircraft subset class_{c + 6:02d} (not Airbus or Boeing; trainval split)"])
    write_csv(root / "labels.csv", list(LABELS_COLUMNS), rows)
    return root


def test_preset_imports_other_makers_in_place(other_like, tmp_path):
    out = tmp_path / "data" / "raw" / "other-aircraft"
    assert main(["other-aircraft", "--root", str(other_like), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    df = read_metadata(out)
    assert len(df) == 12
    assert set(df["manufacturer"]) == {"Other"} and set(df["family"]) == {""} and set(df["icao_type"]) == {""}
    assert set(df["source"]) == {SOURCE} and origin_of(SOURCE) == "fgvc"
    assert set(df["type_raw"]) == {"class_06", "class_07", "class_08"}
    assert set(df["crop_box"]) == {""}  # the banner is already cut in this set
    assert all(Path(p).resolve().is_relative_to(other_like.resolve()) for p in df["abs_path"])  # never copied
    assert {"train", "validation", "test"} >= set(df["split"]) and len(set(df["split"])) >= 2


def test_the_shared_folder(tmp_path):
    if not (OTHER / "labels.csv").is_file():
        pytest.skip(f"no {OTHER}/labels.csv")
    out = tmp_path / "other"
    assert main(["other-aircraft", "--root", str(OTHER), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    df = read_metadata(out)
    assert len(df) == 932 and set(df["manufacturer"]) == {"Other"}
    assert df["type_raw"].nunique() == 14
    counts = df["split"].value_counts().to_dict()
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
