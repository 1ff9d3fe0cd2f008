"""Batch scoring: every file scored once, resumable after a crash, unreadable files reported."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest

from model.cascade import Cascade
from model.pipeline import Pipeline
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
    from dataset.schema import COLUMNS, empty_row

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
    preds = Pipeline(cascade).predict(df["abs_path"].tolist())
    # threshold 0: every disagreement is flagged; labels say Airbus, so exactly the Boeing predictions
    suspects = find_suspects(cascade, df, threshold=0.0)
    assert {s["row"] for s in suspects if s["kind"] == "manufacturer"} == {
        i for i, p in enumerate(preds) if p["manufacturer"]["label"] == "Boeing"}
    assert find_suspects(cascade, df, threshold=1.01) == []
    report = write_report(suspects, tmp_path / "suspects.md", len(df), 0.0, cascade.version)
    text = report.read_text()
    assert text.startswith(f"# Suspect labels ({len(suspects)} of 4 rows)")
    assert csv_path.is_file() and all(p.is_file() for p in smoke_photos[:4])  # nothing deleted


def test_score_columns_of_the_new_answers(tiny_model_dir, feature_model_dir, feature_image_dir, tmp_path):
    """Answer level and text, aircraft probability and box at the end of every row: an older
    version (whole image, no gate), the feature model (box inside the image after EXIF rotation,
    ``Other`` at manufacturer level) and its gate at 1.0 (not an aircraft)."""
    from PIL import Image, ImageOps

    from model.cascade import NONE_TEXT, OTHER_TEXT

    images = tmp_path / "images"
    images.mkdir()
    for p in feature_image_dir.iterdir():
        shutil.copy(p, images / p.name)
    (images / "broken.jpg").write_bytes((feature_image_dir / "exif6.jpg").read_bytes()[:300])
    assert list(SCORE_COLUMNS[12:16]) == ["answer_level", "answer_text", "aircraft_probability", "box"]
    assert list(SCORE_COLUMNS[16:]) == ["answer_source", "registration", "registration_icao_type",
                                        "registration_agrees", "registration_box", "unsure_reasons"]
    assert list(SCORE_COLUMNS[:12]) == ["file", "manufacturer", "manufacturer_probability", "family",
                                        "family_probability", "type", "type_probability", "answer",
                                        "joint_probability", "unsure", "model_version", "error"]

    old = _rows(score_folder(Cascade.load(tiny_model_dir), images, tmp_path / "old.csv", batch_size=2,
                             progress=False)["out"])
    for r in old:
        if r["file"] == "broken.jpg":
            assert r["error"] and r["answer_level"] == r["answer_text"] == r["box"] == ""
            continue
        assert r["answer_level"] in ("type", "family") and r["answer_text"] == f"{r['manufacturer']} {r['answer']}"
        assert r["aircraft_probability"] == "" and r["box"] == ""
        # why: empty when sure, else the codes of stage 1 alone (this version has no confidence rule)
        assert (r["unsure_reasons"] == "") == (r["unsure"] == "false")
        assert set(filter(None, r["unsure_reasons"].split(","))) <= {"low_confidence", "types_close"}

    cascade = Cascade.load(feature_model_dir)
    new = {r["file"]: r for r in _rows(score_folder(cascade, images, tmp_path / "new.csv", batch_size=2,
                                                    progress=False)["out"])}
    assert new["broken.jpg"]["error"] and new["broken.jpg"]["box"] == ""
    red = new["red.png"]
    assert (red["manufacturer"], red["answer"], red["answer_level"], red["answer_text"]) == \
        ("Other", "Other", "manufacturer", OTHER_TEXT)
    assert red["family"] == red["type"] == "" and red["family_probability"] == ""
    for name, r in new.items():
        if name == "broken.jpg":
            continue
        assert 0.0 < float(r["aircraft_probability"]) < 0.01
        left, top, right, bottom = map(int, r["box"].split())
        with Image.open(images / name) as im:
            w, h = ImageOps.exif_transpose(im).size
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    batch = sorted(p.name for p in images.iterdir())[2:4]  # the second batch of two, as score_folder made it
    assert batch[0] == "exif6.jpg"
    ref = Pipeline(cascade).predict([images / n for n in batch])[0]
    assert new["exif6.jpg"]["box"] == " ".join(map(str, ref["box"]))

    cascade.aircraft_threshold = 1.0
    gated = _rows(score_folder(cascade, images, tmp_path / "none.csv", batch_size=8, progress=False)["out"])
    for r in gated:
        if r["file"] != "broken.jpg":
            assert (r["manufacturer"], r["manufacturer_probability"], r["answer"], r["answer_level"],
                    r["answer_text"], r["joint_probability"], r["unsure"], r["unsure_reasons"]) == \
                ("", "", "none", "none", NONE_TEXT, "", "false", "")


def test_the_forward_limit_pays_for_the_localizer_too(feature_model_dir, monkeypatch):
    """make bench-score / bench-serve limits run every forward pass a request pays: the localizer
    on the whole image (its input size) and the cascade."""
    import numpy as np

    from model import localize
    from model.bench import score as bench

    c = Cascade.load(feature_model_dir)
    assert c.localizer is not None
    x = np.random.default_rng(0).random((3, *c.spec.input_shape), dtype=np.float32)
    shapes, real = [], localize.run
    monkeypatch.setattr(localize, "run", lambda m, xl: shapes.append(xl.shape) or real(m, xl))
    preds = bench.model_forward(c, x)
    assert shapes == [(3, c.localizer_size, c.localizer_size, 3)]
    assert [p["answer"] for p in preds] == [{**p["answer"], "source": "image"} for p in c.predict(x, top_k=1)]
    assert bench.forward_limit(c, x, batch_size=2, min_images=4) > 0 and len(shapes) == 1 + 1 + 2


def test_a_gate_only_version_scores_from_one_pooled_decode_as_the_pipeline(feature_image_dir, tmp_path):
    """The default recipe's shape (localizer without crop): the pool makes both inputs from one
    decode; rows equal Pipeline.predict's answers, unreadable files get their error."""
    from tests.conftest import build_tiny_cascade

    version = build_tiny_cascade(tmp_path / "models", localizer_size=96, other=True, aircraft_threshold=0.0)
    c = Cascade.load(version)
    images = tmp_path / "images"
    images.mkdir()
    for p in feature_image_dir.iterdir():
        shutil.copy(p, images / p.name)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    summary = score_folder(c, images, tmp_path / "s.csv", batch_size=2, progress=False)
    assert summary["errors"] == 1
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    assert rows["broken.jpg"]["error"] and rows["broken.jpg"]["answer"] == ""
    names = sorted(p.name for p in feature_image_dir.iterdir())
    ref = Pipeline(c).predict([images / n for n in names], top_k=1)
    for n, want in zip(names, ref):
        assert rows[n]["answer"] == want["answer"]["label"] and rows[n]["answer_level"] == want["answer"]["level"]
        assert float(rows[n]["aircraft_probability"]) == pytest.approx(want["aircraft"]["probability"], abs=1e-5)
        assert float(rows[n]["manufacturer_probability"] or 0) == pytest.approx(
            want["manufacturer"]["probability"] or 0, abs=1e-5)
        assert rows[n]["box"] == ""
