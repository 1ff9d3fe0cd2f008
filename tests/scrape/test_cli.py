"""The command line: --help, parse (CSV to stdout), eda; errors exit non-zero."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from conftest import REPO
from loopback_site import HTML_DIR

from dataset.metadata import write_rows_atomic
from scrape.parse import parse_listing, to_row
from dataset.schema import COLUMNS, empty_row

A220 = HTML_DIR / "photos_aircraft_Airbus_A220-100_page1_2021-04.html"
A310 = HTML_DIR / "photos_aircraft_Airbus_A310-300_cards-fragment_2021-11.txt"
NO_RESULTS = HTML_DIR / "photos_aircraft_no-results_2021-04.html"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scrape", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_help():
    res = cli("--help")
    assert res.returncode == 0
    for sub in ("parse", "crawl", "eda"):
        assert sub in res.stdout
    for sub in ("parse", "crawl", "eda"):
        r = cli(sub, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout
    assert "--contact" in cli("crawl", "--help").stdout


def test_parse_writes_schema_csv():
    base = "https://www.planespotters.net/photos/aircraft/Airbus/A220-100"
    res = cli("parse", str(A220), "--base-url", base)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert tuple(rows[0].keys()) == COLUMNS
    expected = [to_row(r) for r in parse_listing(A220.read_text(encoding="utf-8"), base)]
    assert rows == expected and len(rows) == 48
    assert len(list(csv.DictReader(io.StringIO(cli("parse", str(A310)).stdout)))) == 14
    res = cli("parse", str(NO_RESULTS))
    assert res.returncode == 0 and res.stdout.strip() == ",".join(COLUMNS)


def test_parse_unreadable_input(tmp_path):
    res = cli("parse", str(tmp_path / "missing.html"))
    assert res.returncode != 0 and "no such file" in res.stderr and res.stdout == ""
    binary = tmp_path / "x.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xff")
    res = cli("parse", str(binary))
    assert res.returncode != 0 and "not UTF-8" in res.stderr
    text = tmp_path / "t.txt"
    text.write_text("just words", encoding="utf-8")
    res = cli("parse", str(text))
    assert res.returncode != 0 and "no HTML" in res.stderr
    res = cli("parse", str(tmp_path))
    assert res.returncode != 0 and "directory" in res.stderr


def test_eda_on_crawl_output(main_crawl, tmp_path):
    out = tmp_path / "reports" / "eda.md"
    res = cli("eda", str(main_crawl.out / "metadata.csv"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    md = out.read_text(encoding="utf-8")
    for heading in ("Photos per manufacturer", "Photos per aircraft type", "Photos per airline",
                    "Missing values per column", "Near-duplicates", "Unmapped aircraft types"):
        assert f"## {heading}" in md
    assert "| A388 | 7 |" in md or "| A388 |" in md
    assert "Cessna 172S Skyhawk SP" in md
    figs = sorted(p.name for p in (tmp_path / "reports" / "eda_figures").iterdir())
    assert figs == ["airline.png", "icao_type.png", "manufacturer.png", "missing.png"]
    for f in figs:
        assert (tmp_path / "reports" / "eda_figures" / f).read_bytes()[:4] == b"\x89PNG"
    assert "1 photos are flagged as near-duplicates" in md


def test_eda_on_synth_like_csv(tmp_path):
    rows = []
    for i, (t, m) in enumerate([("B738", "Boeing"), ("A320", "Airbus"), ("B738", "Boeing")]):
        r = empty_row()
        r.update(image_path=f"img/{i}.jpg", manufacturer=m, icao_type=t, source="flightgear",
                 airline="Ryanair", split="train", width="256", height="256")
        rows.append(r)
    write_rows_atomic(tmp_path / "metadata.csv", rows)
    out = tmp_path / "eda.md"
    res = cli("eda", str(tmp_path / "metadata.csv"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    md = out.read_text(encoding="utf-8")
    assert "3 photos; sources: flightgear 3." in md
    assert "| B738 | 2 | 66.7 % |" in md
    assert "| photographer | 3 | 100.0 % |" in md
    assert "## Splits" in md


def test_eda_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    res = cli("eda", str(bad), "--out", str(tmp_path / "e.md"))
    assert res.returncode != 0 and "missing columns" in res.stderr
    res = cli("eda", str(tmp_path / "none.csv"), "--out", str(tmp_path / "e.md"))
    assert res.returncode != 0 and "no such CSV" in res.stderr
    assert not (tmp_path / "e.md").exists()
