"""Scraper parity: R rvest (r/scrape.R) vs Python parsel (scrape/parse.py) on the real saved
pages and on the loopback test site's pages — every record equal field by field, and the CLIs'
CSV output equal byte for byte."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from rparity import HTML_DIR, R_DIR, ROOT

sys.path.insert(0, str(ROOT / "tests" / "scrape"))  # loopback_site: the test site's markup

A220_BASE = "https://www.planespotters.net/photos/aircraft/Airbus/A220-100"
A310_BASE = "https://www.planespotters.net/photos/aircraft/Airbus/A310-300"


def saved_pages() -> list[tuple[str, Path, str]]:
    return [
        ("a220_2021", HTML_DIR / "photos_aircraft_Airbus_A220-100_page1_2021-04.html", A220_BASE),
        ("a310_fragment_2021", HTML_DIR / "photos_aircraft_Airbus_A310-300_cards-fragment_2021-11.txt", A310_BASE),
        ("no_results_2021", HTML_DIR / "photos_aircraft_no-results_2021-04.html", A220_BASE + "?page=2"),
    ]


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[tuple[str, Path, str]]:
    """The saved pages, the test site's generated /photos/latest pages (current markup) and a
    saved fragment of cards in today's markup (sub-model alone in the aircraft link)."""
    from loopback_site import CARDS_PER_PAGE, LATEST_PAGES, latest_cards, listing_html, today_fragment_html

    out = [p for p in saved_pages() if p[1].is_file()]
    if len(out) != 3:
        pytest.fail(f"saved pages missing under {HTML_DIR}")
    tmp = tmp_path_factory.mktemp("site")
    cards = latest_cards()
    for page in range(1, LATEST_PAGES + 1):
        html = listing_html(cards[(page - 1) * CARDS_PER_PAGE: page * CARDS_PER_PAGE], "Latest Photos",
                            f"/photos/latest?page={page + 1}")
        f = tmp / f"latest_page{page}.html"
        f.write_text(html, encoding="utf-8")
        out.append((f"test_site_latest_p{page}", f, f"http://127.0.0.1:8000/photos/latest?page={page}"))
    today = tmp / "photos_latest_cards-fragment_today.html"
    today.write_text(today_fragment_html(), encoding="utf-8")
    out.append(("today_fragment", today, "https://www.planespotters.net/photos/latest"))
    return out


def python_cli(path: Path, base: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "scrape", "parse", str(path), "--base-url", base],
                          cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def r_records(r, path: Path, base: str) -> tuple[list[dict], str]:
    """(rows as dicts, CSV text) from r/scrape.R through rpy2."""
    html = path.read_text(encoding="utf-8")
    rows = r.r["ps_to_rows"](r.r["ps_parse_listing"](html, base))
    cols = list(r.r["names"](rows))
    data = {c: list(rows.rx2(c)) for c in cols}
    n = len(data[cols[0]]) if cols else 0
    return [{c: data[c][i] for c in cols} for i in range(n)], r.r["ps_csv_text"](rows)[0]


def test_records_equal_field_by_field(r, pages, parity):
    failures = []
    for name, path, base in pages:
        py_csv = python_cli(path, base)
        py_rows = list(csv.DictReader(io.StringIO(py_csv.decode("utf-8"))))
        py_header = py_csv.decode("utf-8").splitlines()[0]
        rows, r_csv = r_records(r, path, base)
        mismatches = [(i, k, a[k], b.get(k)) for i, (a, b) in enumerate(zip(py_rows, rows)) for k in a
                      if a[k] != b.get(k)]
        same_cols = r_csv.splitlines()[0] == py_header
        ok = parity.check(f"scraper.records.{name}", len(py_rows) == len(rows) and not mismatches and same_cols,
                          records_python=len(py_rows), records_r=len(rows), fields_compared=len(py_rows) * 24,
                          mismatched_fields=len(mismatches), first_mismatches=mismatches[:5],
                          csv_bytes_equal=r_csv.encode("utf-8") == py_csv)
        if not ok:
            failures.append((name, len(py_rows), len(rows), mismatches[:5]))
    assert not failures, failures
    counts = {name: len(r_records(r, path, base)[0]) for name, path, base in pages}
    assert counts["a220_2021"] == 48 and counts["a310_fragment_2021"] == 14 and counts["no_results_2021"] == 0
    today, _ = r_records(r, *next((p, b) for n, p, b in pages if n == "today_fragment"))
    # R labels today's cards from the links too (none Other, MSN from the span beside the registration)
    assert [(x["manufacturer"], x["icao_type"], x["msn"]) for x in today[:4]] == [
        ("Airbus", "A333", "1405"), ("Boeing", "B744", "26350"), ("Airbus", "A21N", "10150"),
        ("Boeing", "B38M", "42558")]


def test_r_cli_csv_is_byte_identical(pages, parity):
    """``Rscript r/scrape.R FILE --base-url URL`` prints the same bytes as ``python -m scrape parse``."""
    diffs = {}
    for name, path, base in pages[:3] + pages[3:4] + [p for p in pages if p[0] == "today_fragment"]:
        proc = subprocess.run(["Rscript", str(R_DIR / "scrape.R"), str(path), "--base-url", base],
                              cwd=ROOT, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        py = python_cli(path, base)
        diffs[name] = {"equal": proc.stdout == py, "bytes_r": len(proc.stdout), "bytes_python": len(py)}
    ok = parity.check("scraper.cli_csv_bytes", all(d["equal"] for d in diffs.values()), pages=diffs)
    assert ok, diffs
    assert "today_fragment" in diffs


def test_r_cli_errors(tmp_path):
    missing = subprocess.run(["Rscript", str(R_DIR / "scrape.R"), str(tmp_path / "nope.html")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no such file" in missing.stderr and missing.stdout == ""
    text = tmp_path / "plain.txt"
    text.write_text("no markup here", encoding="utf-8")
    nomarkup = subprocess.run(["Rscript", str(R_DIR / "scrape.R"), str(text)], capture_output=True, text=True,
                              timeout=60)
    assert nomarkup.returncode == 1 and "no HTML markup" in nomarkup.stderr
    usage = subprocess.run(["Rscript", str(R_DIR / "scrape.R")], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr


TYPE_STRINGS = [
    "Airbus A220-100", "Bombardier CSeries CS100 (BD-500-1A10)", "Bombardier CSeries CS300", "Airbus A320-214",
    "Airbus A320-271N", "Airbus A321-271NX", "Airbus A321-211", "Airbus A319-112", "Airbus A330-243F",
    "Airbus A340-313X", "Airbus A340-541", "Airbus A380-841", "Airbus A350-941", "Airbus A310-304",
    "Airbus A310-308(F)", "Airbus A300B4-622R", "Airbus A300-600ST", "Boeing 737-8AS(WL)", "Boeing 737-7H4(WL)",
    "Boeing 737 MAX 8", "Boeing 737-8 MAX", "Boeing 737-9 MAX", "Boeing 747-400", "Boeing 747-8HVF",
    "Boeing 747-4R7F", "Boeing 767-332(ER)", "Boeing 767-3S2F", "Boeing 777-3F2(ER)", "Boeing 777-F1B",
    "Boeing 777-2Q8(LR)", "Boeing 787-9 Dreamliner", "BOEING 767-332(ER)", "boeing 737-824",
    "Embraer ERJ-190-100LR", "Embraer E195-E2", "Embraer ERJ-145LR", "ATR 72-600", "ATR ATR 42-500",
    "de Havilland Canada DHC-8-402Q Dash 8", "McDonnell Douglas MD-11F", "Cessna 172S Skyhawk SP",
    "Antonov Design Bureau An-124-100", "", "  Airbus   A320-214  ", "Airbus\u00a0A320-214", "Sukhoi Superjet 100",
]


def test_label_rules_equal(r, parity):
    """The label table (dataset/type_rules.json) is applied identically by R and Python."""
    from dataset.labels import normalise_type, split_manufacturer

    mismatches = []
    for s in TYPE_STRINGS:
        py_m = split_manufacturer(s)
        py_l = normalise_type(s, py_m)
        r_m = r.r["ps_split_manufacturer"](s)[0]
        r_l = r.r["ps_normalise_type"](s, r_m)
        r_t = (r_l.rx2("manufacturer")[0], r_l.rx2("icao_type")[0], r_l.rx2("sub_model")[0])
        if (py_m, (py_l.manufacturer, py_l.icao_type, py_l.sub_model)) != (r_m, r_t):
            mismatches.append((s, py_m, tuple(py_l.__dict__.values()), r_m, r_t))
    ok = parity.check("scraper.label_rules", not mismatches, strings=len(TYPE_STRINGS), mismatches=mismatches)
    assert ok, mismatches
