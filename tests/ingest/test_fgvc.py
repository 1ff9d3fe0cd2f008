"""`python -m ingest fgvc`: FGVC-Aircraft's layout, variant table, kept splits, banner crop, download."""

from __future__ import annotations

import http.server
import socket
import tarfile
import threading
from pathlib import Path

import pytest
from imgfix import photo, save, with_banner

from ingest import fgvc
from ingest.__main__ import main
from ingest.core import IngestError
from dataset.metadata import read_rows
from dataset.schema import family_of, manufacturer_of_family

#: image id → (variant, FGVC manufacturer, FGVC family, FGVC split file suffix)
IMAGES = {
    "0034309": ("737-800", "Boeing", "Boeing 737", "train"),
    "0034958": ("A330-200", "Airbus", "A330", "train"),
    "0037511": ("Boeing 717", "Boeing", "Boeing 717", "train"),
    "0041135": ("BAE 146-200", "British Aerospace", "BAE 146", "val"),
    "0056978": ("777-300", "Boeing", "Boeing 777", "val"),
    "1009435": ("Embraer Legacy 600", "Embraer", "Embraer Legacy 600", "test"),
    "1056978": ("ATR-72", "ATR", "ATR-72", "test"),
    "2246754": ("A380", "Airbus", "A380", "test"),
}


def make_fgvc(root: Path, images=IMAGES) -> Path:
    """FGVC-Aircraft 2013b's layout under ``root``: images with a 20-px banner and the txt files."""
    data = root / fgvc.TOP / "data"
    for k, image_id in enumerate(images):
        save(with_banner(photo(200 + k, 150, 100)), data / "images" / f"{image_id}.jpg")
    for suffix in ("train", "val", "test"):
        for kind, col in (("variant", 0), ("manufacturer", 1), ("family", 2)):
            lines = [f"{i} {v[col]}\n" for i, v in images.items() if v[3] == suffix]
            (data / f"images_{kind}_{suffix}.txt").write_text("".join(lines))
    return data


def test_variant_table_covers_fgvc_and_agrees_with_the_families():
    table = fgvc.variant_table()
    assert len(table) == 100
    boeing = ["707-320", "727-200", *[f"737-{k}00" for k in range(2, 10)], *[f"747-{k}00" for k in range(1, 5)],
              "757-200", "757-300", "767-200", "767-300", "767-400", "777-200", "777-300", "Boeing 717"]
    airbus = ["A300B4", "A310", "A318", "A319", "A320", "A321", "A330-200", "A330-300",
              "A340-200", "A340-300", "A340-500", "A340-600", "A380"]
    assert {v for v, e in table.items() if e["manufacturer"] == "Boeing"} == set(boeing)
    assert {v for v, e in table.items() if e["manufacturer"] == "Airbus"} == set(airbus)
    for v, e in table.items():
        assert e["manufacturer"] in ("Airbus", "Boeing", "Other"), v
        if e["manufacturer"] == "Other":
            assert e["family"] == "" and family_of(e["icao_type"]) == "", v
        else:
            assert manufacturer_of_family(e["family"]) == e["manufacturer"], v
            assert e["icao_type"] == "" or family_of(e["icao_type"]) == e["family"], v
        assert e["icao_type"] or e.get("note") or e["family"], f"{v}: no designator and no note why"
    assert table["737-800"]["icao_type"] == "B738" and table["A380"]["icao_type"] == "A388"
    assert table["MD-11"]["manufacturer"] == "Other"


def test_imports_fgvc_layout_keeping_its_splits(tmp_path, capsys):
    make_fgvc(tmp_path / "fgvc")
    out = tmp_path / "ds"
    code = main(["fgvc", "--root", str(tmp_path / "fgvc"), "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    stdout = capsys.readouterr().out
    assert code == 0
    rows = {r["source_id"]: r for r in read_rows(out / "metadata.csv")}
    assert set(rows) == set(IMAGES)
    want_split = {"train": "train", "val": "validation", "test": "test"}
    for image_id, (variant, maker, _, suffix) in IMAGES.items():
        r = rows[image_id]
        assert r["split"] == want_split[suffix]
        assert r["type_raw"] == variant and r["manufacturer_raw"] == maker
        assert (r["width"], r["height"], r["crop_box"]) == ("150", "120", "0 0 150 100")
        assert r["source"] == "fgvc-aircraft" and r["licence"] == "FGVC-Aircraft: non-commercial research use only"
        assert r["image_path"] == f"../fgvc/fgvc-aircraft-2013b/data/images/{image_id}.jpg"
    assert (rows["0034309"]["manufacturer"], rows["0034309"]["icao_type"], rows["0034309"]["family"]) == \
        ("Boeing", "B738", "B737")
    assert (rows["0037511"]["manufacturer"], rows["0037511"]["icao_type"]) == ("Boeing", "B712")
    assert (rows["0041135"]["manufacturer"], rows["0041135"]["icao_type"], rows["0041135"]["family"]) == \
        ("Other", "B462", "")
    assert (rows["0056978"]["icao_type"], rows["0056978"]["family"]) == ("", "B777")
    assert (rows["1056978"]["manufacturer"], rows["1056978"]["icao_type"]) == ("Other", "")
    assert "fgvc-aircraft" in stdout and "validation" in stdout


def test_unknown_variant_and_missing_files_are_reported(tmp_path, capsys):
    data = make_fgvc(tmp_path / "fgvc")
    with (data / "images_variant_train.txt").open("a") as f:
        f.write("0999999 Concorde\n0999998 Concorde\n")
    with pytest.raises(IngestError, match=r"variants not in fgvc_variants.json: 'Concorde' \(2\)"):
        fgvc.candidates(tmp_path / "fgvc")
    (data / "images_variant_train.txt").write_text("0034309 737-800\n")
    (data / "images" / "0034309.jpg").unlink()
    code = main(["fgvc", "--root", str(tmp_path / "fgvc"), "--out", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "images_variant_train.txt (0034309)" in err and "image file not found" in err
    code = main(["fgvc", "--root", str(tmp_path / "elsewhere"), "--out", str(tmp_path / "o")])
    assert code == 2 and "no FGVC-Aircraft data under" in capsys.readouterr().err


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path, honouring ``Range: bytes=N-``; records the ranges."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.server.payload
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_download_resumes_and_unpacks_atomically(tmp_path, capsys):
    src = tmp_path / "src"
    make_fgvc(src)
    archive = tmp_path / "fgvc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / fgvc.TOP, arcname=fgvc.TOP)
    payload = archive.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.payload, server.ranges = payload, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "dl"
        root.mkdir()
        half = len(payload) // 2
        (root / (fgvc.ARCHIVE + ".part")).write_bytes(payload[:half])  # an interrupted earlier download
        url = f"http://127.0.0.1:{server.server_address[1]}/fgvc-aircraft-2013b.tar.gz"
        code = main(["fgvc", "--root", str(root), "--download", "--url", url, "--out", str(tmp_path / "o"),
                     "--cache-dir", str(tmp_path / "c")])
        assert code == 0, capsys.readouterr().err
        assert server.ranges == [f"bytes={half}-"]
        assert sorted(p.name for p in root.iterdir()) == [fgvc.TOP]  # archive and temp folder gone
        assert len(read_rows(tmp_path / "o" / "metadata.csv")) == len(IMAGES)
        assert fgvc.download(root, url=url) == root / fgvc.TOP / "data"  # present: no request
        assert len(server.ranges) == 1
    finally:
        server.shutdown()


def test_download_offline_fails_clearly(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["fgvc", "--root", str(tmp_path / "dl"), "--download", "--url", f"http://127.0.0.1:{port}/x.tar.gz",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot download http://127.0.0.1" in err and "no internet here?" in err
    assert not (tmp_path / "dl" / fgvc.TOP).exists()
