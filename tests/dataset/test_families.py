"""The family level of the label hierarchy (dataset.schema)."""

from __future__ import annotations

import json
from pathlib import Path

from dataset.schema import FAMILIES, family_of, manufacturer_of_family


def test_families_of_designators():
    assert family_of("B77W") == "B777"
    assert family_of(" b38m ") == "B737"
    assert family_of("A320") == "A320" and family_of("A21N") == "A320"
    assert family_of("BLCF") == "B747" and family_of("BCS3") == "A220"
    assert family_of("") == family_of("A400") == family_of("E190") == ""
    assert manufacturer_of_family("B787") == "Boeing" and manufacturer_of_family("A350") == "Airbus"
    assert manufacturer_of_family("E190") == ""


def test_every_designator_in_one_family_only():
    seen = [t for _, types in FAMILIES.values() for t in types]
    assert len(seen) == len(set(seen))


def test_every_airbus_boeing_designator_the_scraper_emits_has_a_family():
    rules = json.loads((Path(__file__).parents[2] / "dataset" / "type_rules.json").read_text())["rules"]
    fixed = {r["icao_type"] for r in rules
             if r["manufacturer"] in ("Airbus", "Boeing") and "{" not in r["icao_type"] and r["icao_type"] != "A400"}
    assert {t for t in fixed if not family_of(t)} == set()
    for r in rules:
        if r["manufacturer"] in ("Airbus", "Boeing") and family_of(r["icao_type"]):
            assert manufacturer_of_family(family_of(r["icao_type"])) == r["manufacturer"]
