"""Livery resolution against the real flightgear-data-ai package (2020.3.16)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from synth.fleet import (
    GEAR_DOWN_PROPS,
    GEAR_UP_PROPS,
    airline_group,
    evaluate_condition,
    hidden_objects,
    merge_property_lists,
    read_property_list,
    readable_airline,
)

# Renderable pairs per type folder, as measured in /work/shared/notes/flightgear.md, plus the two
# Airbus folders the notes did not count (220 = A220-300 with 5 liveries, 339 = A330-900 with 6).
NOTES_FOLDERS = {
    "A300": 17, "A310": 5, "A319": 56, "A320": 99, "A321": 62, "A332": 66, "A333": 49, "A342": 4,
    "A343": 23, "A345": 6, "A346": 9, "A350": 18, "A380": 14, "717": 8, "733": 32, "734": 3,
    "735": 7, "736": 4, "738": 76, "739": 11, "747": 55, "757": 26, "767": 46, "777": 76, "787": 55,
}


def test_counts_per_manufacturer(scan_all):
    c = Counter(lv.manufacturer for lv in scan_all.liveries)
    assert c["Airbus"] == 428 + 5 + 6
    assert c["Boeing"] == 399
    assert c["Other"] == 239


def test_counts_per_folder_match_notes(scan_all):
    c = Counter(lv.folder for lv in scan_all.liveries)
    for folder, n in NOTES_FOLDERS.items():
        assert c[folder] == n, folder
    assert c["220"] == 5 and c["339"] == 6


def test_include_chain_738_ryanair(by_key, fleet_root):
    lv = by_key["738/738-Ryanair"]
    assert lv.model_path.name == "737-800.ac"
    assert lv.texture_path.parent.name == "Ryanair"
    assert lv.texture_path.name == "738-tex.png"
    assert lv.texture_path.is_file()
    assert (lv.manufacturer, lv.icao_type, lv.sub_model) == ("Boeing", "B738", "737-800")
    assert lv.description == "Boeing737-800"  # from 738-main.xml through include=
    assert any("gear" in s.objects for s in lv.selects)
    assert lv.airline == "Ryanair"


def test_missing_texture_liveries_excluded(scan_all, by_key):
    missing = {"A300/AB6-Default.xml", "A321/A321-AirAsia.xml", "767/767-Rossiya.xml", "767/767-set.xml"}
    reasons = dict(scan_all.skipped)
    for w in missing:
        assert w in reasons and "texture" in reasons[w], w
        assert w.removesuffix(".xml") not in by_key
    # Every kept pair has its texture on disk.
    assert all(lv.texture_path.is_file() for lv in scan_all.liveries)


def test_duplicate_model_texture_pairs_dropped(scan_all):
    pairs = Counter((lv.model_path, lv.texture_path) for lv in scan_all.liveries)
    assert max(pairs.values()) == 1
    assert "777/777-fallback" not in {lv.key for lv in scan_all.liveries}


def test_icao_mapping(by_key):
    def first(prefix):
        return next(lv for k, lv in sorted(by_key.items()) if k.startswith(prefix))

    expect = {
        "738/738-": ("B738", "737-800"),
        "739/73J-": ("B739", "737-900ER"),
        "747/74N-": ("B748", "747-8F"),
        "747/744-": ("B744", "747-400"),
        "777/77W-": ("B77W", "777-300ER"),
        "777/77L-": ("B77L", "777-200LR"),
        "777/77F-": ("B77L", "777F"),
        "787/788-": ("B788", "787-8"),
        "A332/A33X-": ("A332", "A330-200F"),
        "A380/388-": ("A388", "A380-800"),
        "A350/359-": ("A359", "A350-900"),
        "717/717-": ("B712", "717-200"),
        "A300/AB6-": ("A306", "A300-600"),
        "757/757-300-": ("B753", "757-300"),
        "E90/E90-": ("E190", "ERJ-190"),
    }
    for prefix, (icao, sub) in expect.items():
        lv = first(prefix)
        assert (lv.icao_type, lv.sub_model) == (icao, sub), prefix
    assert {lv.manufacturer for k, lv in by_key.items() if k.startswith(("E90/", "CR9/", "AT7/"))} == {"Other"}


def test_gear_and_winglet_selects(by_key):
    lv = by_key["738/738-Ryanair"]
    assert "gear" in hidden_objects(lv.selects, GEAR_UP_PROPS)
    assert "gear" not in hidden_objects(lv.selects, GEAR_DOWN_PROPS)
    # 757s show winglets once the sim is running; 735-main hides them (condition "== 0").
    v757 = next(v for k, v in by_key.items() if k.startswith("757/757-200-"))
    assert "winglets" not in hidden_objects(v757.selects, GEAR_UP_PROPS)
    v735 = next(v for k, v in by_key.items() if k.startswith("735/") and "Winglets" in str(v.selects))
    assert "Winglets" in hidden_objects(v735.selects, GEAR_UP_PROPS)


def test_evaluate_condition_logic():
    cond = ET.fromstring(
        "<condition><or><less-than><property>velocities/true-airspeed-kt</property><value>150</value>"
        "</less-than><not><property>/sim/x</property></not></or></condition>"
    )
    assert evaluate_condition(cond, {"velocities/true-airspeed-kt": 100, "sim/x": 1})
    assert not evaluate_condition(cond, {"velocities/true-airspeed-kt": 200, "sim/x": 1})
    assert evaluate_condition(cond, {"velocities/true-airspeed-kt": 200})
    assert evaluate_condition(None, {})


def test_include_merge_overrides_and_appends(tmp_path):
    (tmp_path / "main.xml").write_text(
        "<PropertyList><path>Models/a.ac</path><texture-path>Textures/A</texture-path>"
        "<animation><type>select</type><object-name>gear</object-name></animation></PropertyList>"
    )
    (tmp_path / "liv.xml").write_text(
        '<PropertyList include="main.xml"><texture-path>Textures/B</texture-path>'
        "<description>x</description></PropertyList>"
    )
    t = read_property_list(tmp_path / "liv.xml")
    assert t.findtext("path") == "Models/a.ac"
    assert t.findtext("texture-path") == "Textures/B"
    assert len(t.findall("texture-path")) == 1
    assert t.findtext("description") == "x"
    assert t.find("animation/object-name").text == "gear"
    base = ET.fromstring("<a><b>1</b><b>2</b></a>")
    merge_property_lists(base, ET.fromstring("<a><b>9</b><b>8</b><b>7</b></a>"))
    assert [b.text for b in base.findall("b")] == ["9", "8", "7"]


def test_readable_airline_and_groups(by_key):
    assert readable_airline("AirBerlin") == "Air Berlin"
    assert readable_airline("KLM") == "KLM"
    assert readable_airline("IcelandAir-cargo") == "Iceland Air cargo"
    lh = [v for v in by_key.values() if v.livery == "Lufthansa"]
    assert len({v.icao_type for v in lh}) >= 5
    assert {airline_group(v) for v in lh} == {"lufthansa"}  # one group across A320, A380, 747, ...
    d1 = airline_group(by_key["A321/A321-default"])
    assert d1.startswith("generic:A321")
