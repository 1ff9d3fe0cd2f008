"""Batch scoring: every file scored once, resumable after a crash, unreadable files reported."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

from model.cascade import Cascade
from model.score import SCORE_COLUMNS, list_images, score_folder


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_resume_and_errors(tiny_model_dir, smoke_photos, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in smoke_photos[:5]:
        shutil.copy(p, images / p.name)
    (images / "broken.jpg").write_bytes(smoke_photos[0].read_bytes()[:1500])
    (images / "notes.txt").write_text("not an image")
    cascade = Cascade.load(tiny_model_dir)
    out = tmp_path / "scores.csv"

    first = score_folder(cascade, images, out, batch_size=4, progress=False)
    assert first == {"scored": 6, "skipped": 0, "errors": 1, "out": str(out)}
    rows = _rows(out)
    assert list(rows[0]) == list(SCORE_COLUMNS)
    assert sorted(r["file"] for r in rows) == sorted([p.name for p in smoke_photos[:5]] + ["broken.jpg"])
    broken = next(r for r in rows if r["file"] == "broken.jpg")
    assert broken["error"] and broken["manufacturer"] == ""
    good = [r for r in rows if r["file"] != "broken.jpg"]
    assert all(r["manufacturer"] in ("Airbus", "Boeing") and 0 <= float(r["manufacturer_probability"]) <= 1 for r in good)

    # simulate a crash mid-write: a partial last line, and one more image arriving
    with open(out, "a") as f:
        f.write("half-written-row.jpg,Boe")
    shutil.copy(smoke_photos[6], images / smoke_photos[6].name)
    second = score_folder(cascade, images, out, batch_size=4, progress=False)
    assert second["scored"] == 1 and second["skipped"] == 6
    rows2 = _rows(out)
    assert len(rows2) == 7 and len({r["file"] for r in rows2}) == 7
    assert not any(r["file"].startswith("half-written") for r in rows2)


def test_shards_partition_the_folder(smoke_photos):
    folder = smoke_photos[0].parent
    shards = [list_images(folder, 3, i) for i in range(3)]
    assert sorted(sum(shards, [])) == list_images(folder)
    assert all(not (set(a) & set(b)) for i, a in enumerate(shards) for b in shards[i + 1:])


def test_cli_score_bad_folder_is_a_clear_error(tiny_model_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "model", "score", "--images", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o.csv"), "--model-dir", str(tiny_model_dir)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "image folder not found" in r.stderr


def test_bench_score_writes_the_three_figures(tiny_model_dir, smoke_photos, tmp_path):
    out = tmp_path / "score.json"
    r = subprocess.run([sys.executable, "-m", "model.bench", "--model-dir", str(tiny_model_dir),
                        "--images", str(smoke_photos[0].parent), "--n-images", "12", "--naive-images", "4",
                        "--batch-size", "4", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    res = json.loads(out.read_text())
    assert res["n_images"] == 12 and res["batch_size"] == 4 and res["scored"] == 12
    for k in ("images_per_s", "limit_images_per_s", "naive_images_per_s"):
        assert res[k] > 0


def test_clean_suspects_flags_confident_disagreements(tiny_model_dir, smoke_photos, tmp_path):
    import hashlib

    from model import data as mdata
    from model.suspects import find_suspects, write_report
    from scrape.schema import COLUMNS, empty_row

    cascade = Cascade.load(tiny_model_dir)
    rows = []
    for p in smoke_photos[:4]:
        r = empty_row()
        r.update(image_path=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest(), manufacturer="Airbus",
                 icao_type="A320", split="test")
        rows.append(r)
    csv_path = tmp_path / "metadata.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    df = mdata.read_metadata(csv_path)
    preds = cascade.predict_images(df["abs_path"].tolist())
    # threshold 0: every disagreement is flagged; labels say Airbus, so exactly the Boeing predictions
    suspects = find_suspects(cascade, df, threshold=0.0)
    assert {s["row"] for s in suspects if s["kind"] == "manufacturer"} == {
        i for i, p in enumerate(preds) if p["manufacturer"]["label"] == "Boeing"}
    assert find_suspects(cascade, df, threshold=1.01) == []
    report = write_report(suspects, tmp_path / "suspects.md", len(df), 0.0, cascade.version)
    text = report.read_text()
    assert text.startswith(f"# Suspect labels ({len(suspects)} of 4 rows)")
    assert csv_path.is_file() and all(p.is_file() for p in smoke_photos[:4])  # nothing deleted
