"""Pure parsers on the real saved pages (2021 markup) and generated current markup."""

from __future__ import annotations

from collections import Counter

import pytest
from loopback_site import HTML_DIR, Card, card_html, listing_html
from parsel import Selector

from scrape.parse import (
    PARSED_FIELDS, is_no_results, largest_srcset_url, next_page_url, parse_date, parse_listing,
    parse_photo_page, to_row,
)
from scrape.schema import COLUMNS

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
