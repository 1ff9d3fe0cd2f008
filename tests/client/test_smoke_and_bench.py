"""The HTTP clients: smoke's truth column and photo choice, the bench's row arithmetic, and one
smoke run through real gunicorn with the tiny model."""

from __future__ import annotations

import csv

import pytest

from client import bench
from client.smoke import photos_and_truth, print_table, smoke, summary, truth_of


@pytest.mark.parametrize("row, want", [
    ({"manufacturer": "Airbus", "family": "A340", "variant_if_known": "A340-300"}, ("Airbus", "A340", "A343")),
    ({"manufacturer": "Boeing", "family": "737", "variant_if_known": "737-800"}, ("Boeing", "B737", "B738")),
    ({"manufacturer": "Boeing", "icao_type": "B77W"}, ("Boeing", "B777", "B77W")),
])
def test_truth_of_normalises_photo_labels_and_schema_rows(row, want):
    assert truth_of(row) == want


def test_photos_and_truth_reads_labels_else_the_fallback_test_split(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("b.jpg", "a.png", "notes.txt"):
        (photos / name).write_bytes(b"x")
    (photos / "labels.csv").write_text("file,manufacturer,family,variant_if_known\na.png,Boeing,737,737-800\n")
    images, truth = photos_and_truth(photos, tmp_path / "none", 12)
    assert [p.name for p in images] == ["a.png", "b.jpg"]
    assert truth == {"a.png": ("Boeing", "B737", "B738")}

    data = tmp_path / "data"
    data.mkdir()
    with open(data / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "split", "manufacturer", "icao_type"])
        w.writerows([["images/1.png", "train", "Airbus", "A320"], ["images/2.png", "test", "Airbus", "A320"],
                      ["images/3.png", "test", "Boeing", "B738"], ["images/4.png", "test", "Boeing", "B738"]])
    images, truth = photos_and_truth(tmp_path / "missing", data, 2)
    assert images == [data / "images" / "2.png", data / "images" / "3.png"]
    assert truth["3.png"] == ("Boeing", "B737", "B738")
    with pytest.raises(FileNotFoundError):
        photos_and_truth(tmp_path / "missing", tmp_path / "missing-too", 2)


def test_median_rows_and_ratios():
    rows = [{"server": "python", "payload_width": 800, "concurrency": 8, "errors": 0, "rps": r,
             "p50_ms": 10.0, "p99_ms": 20.0, "round": i} for i, r in enumerate((10.0, 30.0, 20.0))]
    rows += [{"server": "limit", "payload_width": 800, "concurrency": 8, "errors": 0, "rps": 80.0,
              "p50_ms": 1.0, "p99_ms": 2.0, "rps_with_decode": 40.0, "round": 0}]
    out = bench.median_rows(rows)
    assert [r["server"] for r in out] == ["python", "limit"]
    assert out[0]["rps"] == 20.0 and out[0]["rounds"] == 3 and out[0]["rps_rounds"] == [10.0, 30.0, 20.0]
    assert "round" not in out[0]
    bench.add_ratios(out)
    assert out[0]["ratio_to_forward_limit"] == 0.25 and out[0]["ratio_to_decode_limit"] == 0.5
    assert out[0]["ratio_to_first_width"] == 1.0


def test_smoke_through_gunicorn(tiny_model_dir, smoke_photos, capsys):
    images, truth = photos_and_truth(smoke_photos[0].parent, tiny_model_dir, 12)
    rows = smoke(str(tiny_model_dir), images[:2], truth)
    assert [r["file"] for r in rows] == [p.name for p in images[:2]]
    assert all("error" not in r and r["manufacturer"] and "ok" in r for r in rows), rows
    print_table(rows)
    out = capsys.readouterr().out
    assert "server ready on http://127.0.0.1:" in out and images[0].name in out
    assert summary(rows).startswith("right: manufacturer ")
    assert all(bool(r["why"]) == r["unsure"] for r in rows)  # the unsure reasons' codes, "" when sure
    assert out.splitlines()[1].split()[-1] == "why"
