"""Pure parsers on the real saved pages (2021 markup) and generated current markup."""

from __future__ import annotations

import csv
from collections import Counter
import io
import subprocess
import sys
from pathlib import Path

import pytest
from loopback_site import HTML_DIR, TODAY_CARDS, Card, TodayCard, card_html, listing_html, today_fragment_html
from parsel import Selector

from scrape.parse import (
    PARSED_FIELDS, is_no_results, largest_srcset_url, next_page_url, parse_date, parse_listing,
    parse_listing_checked, parse_photo_page, to_row,
)
from dataset.schema import COLUMNS

A220 = HTML_DIR / "photos_aircraft_Airbus_A220-100_page1_2021-04.html"
A310 = HTML_DIR / "photos_aircraft_Airbus_A310-300_cards-fragment_2021-11.txt"
NO_RESULTS = HTML_DIR / "photos_aircraft_no-results_2021-04.html"
BASE = "https://www.planespotters.net/photos/aircraft/Airbus/A220-100"


def _read(p):
    return p.read_text(encoding="utf-8")


def test_a220_page_all_48_cards_with_fields():
    recs = parse_listing(_read(A220), BASE)
    assert len(recs) == 48
    assert all(tuple(r) == PARSED_FIELDS and all(isinstance(v, str) for v in r.values()) for r in recs)
    assert len({r["source_id"] for r in recs}) == 48
    for f in PARSED_FIELDS:
        if f != "date":  # the 2021 cards show no date
            assert all(r[f] for r in recs), f
    assert recs[0] == {
        "source_id": "1170033",
        "page_url": "https://www.planespotters.net/photo/1170033/n136dq-delta-air-lines-airbus-a220-100",
        "image_url": "https://www.planespotters.net/photos/aircraft/Airbus/Airbus A220-100 _ Latest Photos _ "
                     "Planespotters.net_files/n136dq-delta-air-lines-airbus-a220-100_PlanespottersNet_1170033_"
                     "17b23f69aa_280.jpg",
        "registration": "N136DQ", "msn": "50055", "airline": "Delta Air Lines", "manufacturer_raw": "Airbus",
        "type_raw": "Airbus A220-100", "location": "Minneapolis St. Paul International (MSP / KMSP)",
        "date": "", "photographer": "Stephen J Stein",
        "manufacturer": "Airbus", "icao_type": "BCS1", "sub_model": "A220-100",
    }
    types = Counter(r["type_raw"] for r in recs)
    assert types == {"Bombardier CSeries CS100 (BD-500-1A10)": 31, "Airbus A220-100": 17}
    # the pre-rename CSeries cards get the Airbus label, raw strings kept
    assert {(r["manufacturer_raw"], r["manufacturer"], r["icao_type"]) for r in recs} == {
        ("Bombardier", "Airbus", "BCS1"), ("Airbus", "Airbus", "BCS1")}
    # every card's data agrees with its alt text "REG AIRLINE TYPE"
    sel = Selector(text=_read(A220))
    alts = sel.xpath("//a[contains(@class,'photo_card')]//img/@alt").getall()
    assert [f"{r['registration']} {r['airline']} {r['type_raw']}" for r in recs] == alts


def test_a310_fragment_14_cards():
    recs = parse_listing(_read(A310), "https://www.planespotters.net/")
    assert len(recs) == 14
    assert recs[0]["page_url"] == "https://www.planespotters.net/photo/1220629/hb-iph-swissair-airbus-a310-322"
    assert recs[0]["image_url"].startswith("https://cdn.planespotters.net/45105/")
    assert (recs[0]["registration"], recs[0]["msn"], recs[0]["photographer"]) == ("HB-IPH", "409", "Peter James Cook")
    assert recs[-1]["type_raw"] == "Airbus A310-308(F)" and recs[-1]["sub_model"] == "A310-300F"
    assert {r["icao_type"] for r in recs} == {"A310"}
    assert all(r["location"] and r["airline"] for r in recs)


def test_no_results_page_has_no_cards_despite_footer_photo_links():
    html = _read(NO_RESULTS)
    # the footer's "latest photos" strip has photo links with images: not listing results
    assert len(Selector(text=html).xpath("//a[starts-with(@href,'/photo/')][.//img[@alt]]")) >= 10
    assert parse_listing(html) == []
    assert is_no_results(html)
    assert not is_no_results(_read(A220))


def test_current_markup_card():
    card = Card(2000099, "D-AIAB", "Lufthansa", "Airbus A320-214", "x.jpg", "Jörg Müller",
                "Frankfurt am Main (FRA / EDDF)", 3)
    html = listing_html([card], "Latest", "/photos/latest?page=2")
    (rec,) = parse_listing(html, "http://127.0.0.1:8000/photos/latest")
    assert rec == {
        "source_id": "2000099",
        "page_url": "http://127.0.0.1:8000/photo/2000099/d-aiab-lufthansa-airbus-a320-214",
        "image_url": f"http://127.0.0.1:8000/img/2000099_{2000099 % 997:03x}_640.jpg",
        "registration": "D-AIAB", "msn": "", "airline": "Lufthansa", "manufacturer_raw": "Airbus",
        "type_raw": "Airbus A320-214", "location": "Frankfurt am Main (FRA / EDDF)", "date": "2024-05-03",
        "photographer": "Jörg Müller", "manufacturer": "Airbus", "icao_type": "A320", "sub_model": "A320-200",
    }
    assert next_page_url(html, "http://127.0.0.1:8000/photos/latest") == "http://127.0.0.1:8000/photos/latest?page=2"


def test_card_without_data_lines_falls_back_to_alt():
    html = ('<div><a href="/photo/42/x"><img alt="G-EUPT British Airways Airbus A319-131" src="/t_280.jpg">'
            '<span>© Ann</span></a><span>© not in the card</span></div>')
    (rec,) = parse_listing(html, "https://www.planespotters.net/")
    assert (rec["registration"], rec["airline"], rec["type_raw"], rec["icao_type"]) == (
        "G-EUPT", "British Airways", "Airbus A319-131", "A319")
    assert rec["photographer"] == "Ann" and rec["image_url"] == "https://www.planespotters.net/t_280.jpg"


def test_duplicate_cards_kept_once():
    card = card_html(Card(7, "N1", "X", "Boeing 737-8AS(WL)", "x.jpg", "P", "L", 1))
    assert [r["source_id"] for r in parse_listing(f"<html><body>{card}{card}</body></html>")] == ["7"]


def test_parse_is_deterministic_and_rows_have_schema_columns():
    html = _read(A220)
    a, b = parse_listing(html, BASE), parse_listing(html, BASE)
    assert a == b
    row = to_row(a[0])
    assert tuple(row) == COLUMNS
    assert row["source"] == "planespotters" and row["licence"] == "LicenseRef-All-Rights-Reserved"
    assert row["attribution"] == f"Photo © Stephen J Stein via Planespotters.net, {a[0]['page_url']}"
    assert row["image_path"] == row["sha256"] == row["split"] == ""


@pytest.mark.parametrize("parts,iso", [
    (["13", "May", "2024"], "2024-05-13"), (["1st", "Sep", "2019"], "2019-09-01"),
    (["May", "2024"], "2024-05"), (["2024"], "2024"), ([], ""), (["32", "May", "2024"], ""),
])
def test_parse_date(parts, iso):
    assert parse_date(parts) == iso


def test_largest_srcset_url():
    assert largest_srcset_url("a_280.jpg 280w, a_640.jpg 640w, a_o.jpg") == "a_640.jpg"
    assert largest_srcset_url("") == ""


def test_parse_photo_page():
    html = ('<html><head><meta property="og:url" content="https://x/photo/5/y">'
            '<meta property="og:image" content="/i/5_640.jpg"></head><body>'
            '<img srcset="/i/5_640.jpg 640w, /i/5_1200.jpg 1200w" alt="x"></body></html>')
    assert parse_photo_page(html, "https://x/photo/5/y") == {"image_url": "https://x/i/5_1200.jpg"}
    assert parse_photo_page('<meta property="og:image" content="/o.jpg">', "https://x/") == {
        "image_url": "https://x/o.jpg"}


def test_parse_rejects_bytes():
    with pytest.raises(TypeError):
        parse_listing(b"<html></html>")  # type: ignore[arg-type]


# --- today's markup: sub-model alone in the aircraft link, manufacturer in a sibling link ----

#: photo id -> (manufacturer_raw, type_raw, manufacturer, icao_type, sub_model, msn) for TODAY_CARDS
TODAY_EXPECTED = {
    "2100001": ("Airbus", "Airbus A330-343", "Airbus", "A333", "A330-300", "1405"),
    "2100002": ("Boeing", "Boeing 747-446", "Boeing", "B744", "747-400", "26350"),
    "2100003": ("Airbus", "Airbus A321-271NX", "Airbus", "A21N", "A321neo", "10150"),
    "2100004": ("Boeing", "Boeing 737-8 MAX", "Boeing", "B38M", "737 MAX 8", "42558"),
    "2100005": ("Airbus", "Airbus A350-941", "Airbus", "A359", "A350-900", "0331"),
    "2100006": ("Boeing", "Boeing 767-316F(ER)", "Boeing", "B763", "767-300F", "35818"),
    "2100007": ("Airbus", "Airbus BD-500-1A10", "Airbus", "BCS1", "A220-100", "50010"),  # family completes
    "2100008": ("Airbus", "Airbus A319-131", "Airbus", "A319", "A319", "1380"),  # maker from the alt text
    "2100009": ("Airbus", "Airbus A330-343", "Airbus", "A333", "A330-300", "1178"),  # alt says Boeing
    "2100010": ("Boeing", "Boeing 777-3F2(ER)", "Boeing", "B77W", "777-300ER", "44125"),  # alt says B77L
}
LABEL_FIELDS = ("manufacturer_raw", "type_raw", "manufacturer", "icao_type", "sub_model", "msn")


@pytest.fixture
def today_fragment(tmp_path) -> Path:
    """A saved fragment of today's cards (written by the test, like a copied listing grid)."""
    f = tmp_path / "photos_latest_cards-fragment_today.html"
    f.write_text(today_fragment_html(), encoding="utf-8")
    return f


def test_today_cards_cli_gives_manufacturer_type_and_msn(today_fragment):
    """``python -m scrape parse`` on the fragment: the right labels and MSN for every card."""
    proc = subprocess.run([sys.executable, "-m", "scrape", "parse", str(today_fragment), "--base-url",
                           "https://www.planespotters.net/photos/latest"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["source_id"] for r in rows] == [str(c.photo_id) for c in TODAY_CARDS]
    got = {r["source_id"]: tuple(r[k] for k in LABEL_FIELDS) for r in rows}
    assert got == TODAY_EXPECTED
    by_id = {r["source_id"]: r for r in rows}
    for c in TODAY_CARDS:
        r = by_id[str(c.photo_id)]
        assert (r["registration"], r["airline"], r["date"]) == (c.registration, c.airline, "2025-03-14")
        assert r["location"] == "Kuala Lumpur International (KUL / WMKK)" and r["photographer"]
        assert r["page_url"] == f"https://www.planespotters.net/photo/{c.photo_id}/{c.slug}"
    # the two cards whose alt text contradicts the links are reported on stderr
    assert "2 card(s) whose alt text disagrees" in proc.stderr
    assert "photo 2100009: manufacturer 'Airbus' (links) vs 'Boeing' (alt text)" in proc.stderr
    assert "photo 2100010: icao_type 'B77W' (links) vs 'B77L' (alt text)" in proc.stderr


def test_today_disagreements_keep_the_links():
    parsed = parse_listing_checked(today_fragment_html(), "https://www.planespotters.net/")
    assert parsed.disagreements == [
        {"source_id": "2100009", "field": "manufacturer", "links": "Airbus", "alt": "Boeing"},
        {"source_id": "2100010", "field": "icao_type", "links": "B77W", "alt": "B77L"},
    ]
    assert parsed.records == parse_listing(today_fragment_html(), "https://www.planespotters.net/")
    # the 2021 pages and the older generated markup have none
    for f in (A220, A310):
        assert parse_listing_checked(_read(f), BASE).disagreements == []


@pytest.mark.parametrize("maker_link,href,expected", [
    ("Airbus", "/photos/aircraft/Boeing/747-400", ("Airbus", "Airbus")),  # the manufacturer link wins
    ("", "/photos/aircraft/Boeing/747-400", ("Boeing", "Boeing")),  # else the href
    ("", "/photos/aircraft/747-400", ("Boeing", "Boeing")),  # else the alt text
    ("", "/photos/aircraft/De%20Havilland%20Canada/DHC-8-400", ("De Havilland Canada", "Other")),  # decoded
])
def test_today_manufacturer_sources_in_order(maker_link, href, expected):
    card = TodayCard(3000001, "JA01KZ", "27650", "X", href, "747-446", "Boeing 747-446", maker_link=maker_link)
    (rec,) = parse_listing(today_fragment_html([card]), "https://www.planespotters.net/")
    assert (rec["manufacturer_raw"], rec["manufacturer"]) == expected


def test_today_type_text_that_names_its_maker_is_kept():
    """A link text that already starts with a manufacturer is not prefixed again (the
    pre-rename CSeries names on an Airbus A220 listing keep their label)."""
    card = TodayCard(3000002, "YL-CSA", "55001", "airBaltic", "/photos/aircraft/Airbus/A220-300",
                     "Bombardier CSeries CS300", "Airbus A220-300", maker_link="Airbus")
    (rec,) = parse_listing(today_fragment_html([card]), "https://www.planespotters.net/")
    assert (rec["manufacturer_raw"], rec["type_raw"], rec["icao_type"]) == ("Airbus", "Bombardier CSeries CS300", "BCS3")
