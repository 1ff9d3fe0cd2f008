"""Label normalisation: site type strings → manufacturer / ICAO designator / sub-model."""

from __future__ import annotations

import json
import re

import pytest

from dataset.labels import RULES_FILE, Label, normalise_type, split_manufacturer, squish
from dataset.schema import MANUFACTURERS


@pytest.mark.parametrize("type_raw,expected", [
    ("Boeing 737-8AS(WL)", ("Boeing", "B738", "737-800")),
    ("Airbus A220-100", ("Airbus", "BCS1", "A220-100")),
    ("Bombardier CSeries CS100 (BD-500-1A10)", ("Airbus", "BCS1", "A220-100")),
    ("Bombardier CSeries CS300 (BD-500-1A11)", ("Airbus", "BCS3", "A220-300")),
    ("Airbus A220-300", ("Airbus", "BCS3", "A220-300")),
    ("Boeing 737-8 MAX", ("Boeing", "B38M", "737 MAX 8")),
    ("Boeing 737-8-200 MAX", ("Boeing", "B38M", "737 MAX 8")),
    ("Boeing 737 MAX 9", ("Boeing", "B39M", "737 MAX 9")),
    ("Boeing 737-7H4(WL)", ("Boeing", "B737", "737-700")),
    ("Boeing 737-9GP(ER)(WL)", ("Boeing", "B739", "737-900")),
    ("Boeing 777-3F2(ER)", ("Boeing", "B77W", "777-300ER")),
    ("Boeing 777-300(ER)", ("Boeing", "B77W", "777-300ER")),
    ("Boeing 777-FS2", ("Boeing", "B77L", "777F")),
    ("Boeing 777-2Q8(ER)", ("Boeing", "B772", "777-200ER")),
    ("Boeing 747-8HVF", ("Boeing", "B748", "747-8F")),
    ("Boeing 747-428F(ER)", ("Boeing", "B744", "747-400F")),
    ("Boeing 767-332(ER)", ("Boeing", "B763", "767-300ER")),
    ("Boeing 787-10 Dreamliner", ("Boeing", "B78X", "787-10")),
    ("Boeing 787-9 Dreamliner", ("Boeing", "B789", "787-9")),
    ("Airbus A320-214", ("Airbus", "A320", "A320-200")),
    ("Airbus A320-251N", ("Airbus", "A20N", "A320neo")),
    ("Airbus A321-271NX", ("Airbus", "A21N", "A321neo")),
    ("Airbus A319-112", ("Airbus", "A319", "A319")),
    ("Airbus A330-243F", ("Airbus", "A332", "A330-200F")),
    ("Airbus A330-941", ("Airbus", "A339", "A330-900")),
    ("Airbus A340-313X", ("Airbus", "A343", "A340-300")),
    ("Airbus A350-1041", ("Airbus", "A35K", "A350-1000")),
    ("Airbus A350-941", ("Airbus", "A359", "A350-900")),
    ("Airbus A380-841", ("Airbus", "A388", "A380-800")),
    ("Airbus A310-304 MRTT", ("Airbus", "A310", "A310-300")),
    ("Airbus A300B4-622R", ("Airbus", "A306", "A300-600")),
    ("Embraer ERJ-190LR", ("Other", "E190", "E190")),
    ("de Havilland Canada DHC-8-402Q Dash 8", ("Other", "DH8D", "Dash 8-400")),
    ("McDonnell Douglas MD-83", ("Other", "MD83", "MD-83")),
    ("Cessna 172S Skyhawk SP", ("Other", "", "")),
    ("Boeing KC-46A Pegasus (767-2C)", ("Boeing", "", "")),
    ("Airbus Helicopters H145", ("Other", "", "")),
    ("", ("", "", "")),
])
def test_normalise_type(type_raw, expected):
    assert normalise_type(type_raw) == Label(*expected)


def test_manufacturer_joined_when_type_lacks_it():
    assert normalise_type("737-8AS(WL)", "Boeing") == Label("Boeing", "B738", "737-800")
    assert normalise_type("A320-214", "Airbus").icao_type == "A320"


def test_split_manufacturer():
    assert split_manufacturer("McDonnell Douglas MD-11F") == "McDonnell Douglas"
    assert split_manufacturer("de Havilland Canada DHC-8-402Q Dash 8") == "de Havilland Canada"
    assert split_manufacturer("Bombardier CSeries CS100 (BD-500-1A10)") == "Bombardier"
    assert split_manufacturer("  ") == ""


def test_squish():
    assert squish("  a\u00a0 b\n\tc ") == "a b c"
    assert squish(None) == ""


def test_rules_table_is_well_formed():
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    for r in data["rules"]:
        pat = re.compile(r["pattern"])
        assert r["manufacturer"] in MANUFACTURERS
        assert re.fullmatch(r"[A-Z0-9{}1]{3,6}", r["icao_type"]), r
        if "{1}" in r["icao_type"] + r["sub_model"]:
            assert pat.groups >= 1, r
