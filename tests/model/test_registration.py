"""The registration reader: grammar, registry files, OCR on a real image, fusion with the answer."""

from __future__ import annotations

import copy
import gzip
import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from model import registry as reg
from model.reader import Reading, RegistrationReader, fuse
from model.registration import NATIONALITY, candidates, key, line_candidates
from model.registry import Entry, Registry, RegistryError, convert_tar1090


def _regs(text):
    return [c.registration for c in candidates(text)]


@pytest.mark.parametrize("read, want", [
    ("D-ABYI", "D-ABYI"), ("d abyi", "D-ABYI"), ("N751SW", "N751SW"), ("JA806X", "JA806X"),
    ("9V-SKA", "9V-SKA"), ("B-HNR", "B-HNR"), ("B-16711", "B-16711"),
    ("8-16711", "B-16711"),   # B read as 8 in the nationality mark: China's format is digits
    ("0O-SGC", "OO-SGC"),     # O read as 0
    ("D-A8YI", "D-ABYI"),     # Germany's format is four letters: 8 -> B
    ("G-XLE4", "G-XLEA"),
])
def test_grammar_reads_marks_and_corrects_only_where_the_format_demands(read, want):
    assert want in _regs(read)


def test_grammar_keeps_what_fits_as_read():
    assert _regs("N809FR")[0] == "N809FR"
    assert candidates("N809FR")[0].corrections == 0
    assert _regs("UNITED") == [] and _regs("LUFTHANSA") == [] and _regs("") == []
    assert _regs("港龍航空") == [] and _regs("Аэрофлот") == []  # other scripts: nothing
    assert key("d-abyi") == "DABYI"


def test_line_candidates_rules():
    # a word is not a mark where the state paints a hyphen
    assert [c.registration for _, c in line_candidates("DELTA")] == []
    # a token that fits as read keeps only its as-read candidates
    assert {c.registration for _, c in line_candidates("N1702")} == {"N1702"}
    # a token that fits nothing is tried less a stray end character
    assert "I-DEMV" in {c.registration for _, c in line_candidates("I-DEMV7")}
    # a mark split in two tokens
    assert "D-ABYI" in {c.registration for _, c in line_candidates("D- ABYI")}


def test_grammar_covers_the_shared_registry_airliners():
    """Nearly every Airbus/Boeing registration of the shared registry fits a format as written."""
    path = reg.DEFAULT_REGISTRY
    if not path.is_file():
        pytest.skip("no shared registry")
    r = Registry.load(path)
    airliners = [e.registration for e in r.entries.values() if e.manufacturer in ("Airbus", "Boeing")]
    fits = sum(any(c.corrections == 0 and c.registration == e for c in candidates(e)) for e in airliners)
    assert len(airliners) > 20_000
    assert fits / len(airliners) >= 0.97, fits / len(airliners)
    assert all(len(fmts) and isinstance(hyphen, bool) for fmts, hyphen in NATIONALITY.values())


def _write(path, text, gz=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_registry_load_csv_and_gz(tmp_path):
    text = "registration,icao_type,description\nD-ABYI,B748,BOEING 747-8\nhb-jna,a332,\nN1,ZZZZ,glider\n"
    for gz in (False, True):
        r = Registry.load(_write(tmp_path / f"r{gz}.csv{'.gz' if gz else ''}", text, gz))
        assert r.size == 2
        assert r.get("DABYI") == Entry("D-ABYI", "B748", "BOEING 747-8")
        assert r.get("HB-JNA").icao_type == "A332" and r.get("HB-JNA").manufacturer == "Airbus"
        assert r.get("N1") is None  # placeholder type
    assert Entry("N1", "C172", "").manufacturer == "Other" and Entry("N1", "C172", "").family is None


@pytest.mark.parametrize("content", ["", "registration\nD-ABYI\n", "a,b\nx,not a type at all\n"])
def test_registry_rejects_files_that_are_not_registries_naming_them(tmp_path, content):
    bad = _write(tmp_path / "bad.csv", content)
    with pytest.raises(RegistryError, match="bad.csv"):
        Registry.load(bad)
    with pytest.raises(RegistryError, match="nope.csv"):
        Registry.load(tmp_path / "nope.csv")
    png = tmp_path / "image.csv.gz"
    png.write_bytes(b"\x89PNG not gzip")
    with pytest.raises(RegistryError, match="image.csv.gz"):
        Registry.load(png)


def test_configured_path(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV, "")
    assert reg.configured_path() is None and reg.load_configured() is None
    monkeypatch.setenv(reg.ENV, str(tmp_path / "x.csv"))
    with pytest.raises(RegistryError, match="x.csv"):
        reg.load_configured()


def test_convert_tar1090(tmp_path):
    raw = "3c4b26;D-ABYI;B748;00;BOEING 747-8;;\n000001;;C172;00;;;\n400000;G-XLEA;A388;00;AIRBUS A-380-800;;\n"
    out = tmp_path / "sub" / "registry.csv.gz"
    assert convert_tar1090(gzip.compress(raw.encode()), out) == 2
    r = Registry.load(out)
    assert r.get("G-XLEA").description == "AIRBUS A-380-800" and r.size == 2
    with pytest.raises(RegistryError):
        convert_tar1090(b"plain text", out)


def text_image(text="D-ABYI", size=(1200, 500)) -> Image.Image:
    """A white image with ``text`` painted large in black (a registration on a fuselage)."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((100, 180), text, fill="black", font=ImageFont.load_default(size=120))
    return img


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("registry") / "registry.csv"
    path.write_text("registration,icao_type,description\nD-ABYI,B748,BOEING 747-8\nF-GUGH,A318,AIRBUS A-318\n")
    return Registry.load(path)


def test_reader_reads_a_painted_registration(tiny_registry):
    reader = RegistrationReader(tiny_registry)
    got = reader.read(text_image())
    assert got is not None and got.text == "D-ABYI" and got.entry.icao_type == "B748"
    left, top, right, bottom = got.box
    assert 60 <= left < right <= 1150 and 150 <= top < bottom <= 350  # around the painted text
    # boxes are given in the uploaded image's pixels: a half-size copy read with scale 2
    half = text_image().resize((600, 250))
    got2 = reader.read(half, scale=(2.0, 2.0))
    assert got2 is not None and abs(got2.box[0] - left) < 40 and abs(got2.box[2] - right) < 40
    # inside an aircraft box that holds no text: nothing
    assert reader.read(text_image(), box=[900, 0, 1200, 150]) is None
    # no text, or a registration the registry does not know: nothing
    assert reader.read(Image.new("RGB", (800, 400), "skyblue")) is None
    assert reader.read(text_image("G-EUPA")) is None


def _answer(manufacturer, p, unsure, second=None, level="family"):
    branches = [{"manufacturer": manufacturer, "manufacturer_probability": p}]
    if second:
        branches.append({"manufacturer": second, "manufacturer_probability": 1 - p})
    return {"manufacturer": {"label": manufacturer, "probability": p},
            "family": {"label": "A320", "probability": 0.9, "joint_probability": 0.9 * p},
            "type": {"label": None, "probability": None, "joint_probability": None},
            "answer": {"level": level, "label": "A320 family", "text": "Airbus A320 family"},
            "unsure": unsure, "branches": branches}


READING = Reading("D-ABYI", "D-A8YI", Entry("D-ABYI", "B748", "BOEING 747-8"), [1, 2, 30, 12], 0.97, 1)


def test_fuse_rules():
    none = fuse(_answer("Boeing", 0.9, False), None)
    assert none["registration"] is None and none["answer"]["source"] == "image"

    agree = fuse(_answer("Boeing", 0.9, False), READING)
    assert agree["answer"] == {"level": "type", "label": "B748", "text": "Boeing B748", "source": "registration"}
    assert agree["type"]["label"] == "B748" and agree["family"]["label"] == "B747"
    assert agree["registration"] == {"text": "D-ABYI", "icao_type": "B748", "description": "BOEING 747-8",
                                     "box": [1, 2, 30, 12], "agrees": True}

    sure_other = fuse(_answer("Airbus", 0.95, False), READING)  # a sure image that disagrees wins
    assert sure_other["answer"]["source"] == "image" and sure_other["manufacturer"]["label"] == "Airbus"
    assert sure_other["registration"]["agrees"] is False

    unsure = fuse(_answer("Airbus", 0.55, True, second="Boeing"), READING)  # the registration settles it
    assert unsure["answer"]["source"] == "registration" and unsure["unsure"] is False
    assert unsure["manufacturer"] == {"label": "Boeing", "probability": pytest.approx(0.45)}

    cessna = Reading("D-ELTA", "D-ELTA", Entry("D-ELTA", "C172", "CESSNA 172"), [0, 0, 1, 1], 0.9, 0)
    off_branch = fuse(_answer("Airbus", 0.55, True, second="Boeing"), cessna)  # not one of the two
    assert off_branch["answer"]["source"] == "image" and off_branch["unsure"] is True

    no_aircraft = _answer("Boeing", 0.9, False, level="none")
    no_aircraft["manufacturer"] = {"label": None, "probability": None}
    assert fuse(copy.deepcopy(no_aircraft), READING)["answer"]["level"] == "none"


def test_pipeline_reads_on_request_only(tiny_model_dir, tiny_registry):
    from model.pipeline import Pipeline

    plain = Pipeline.load(tiny_model_dir)
    assert not plain.reads and "read" not in plain.stages
    p = Pipeline.load(tiny_model_dir, registry=tiny_registry)
    assert p.reads and p.stages[-1] == "read"
    buf = io.BytesIO()
    text_image().save(buf, "PNG")
    unread, read = p.predict([buf.getvalue()])[0], p.predict([buf.getvalue()], read=True)[0]
    assert unread["registration"] is None and unread["answer"]["source"] == "image"
    r = read["registration"]
    assert r["text"] == "D-ABYI" and r["icao_type"] == "B748"
    if read["answer"]["source"] == "registration":
        assert read["type"]["label"] == "B748" and r["agrees"] and read["unsure"] is False
    else:
        assert read["answer"] == unread["answer"] and r["agrees"] == (unread["manufacturer"]["label"] == "Boeing")
    # reading off (no registry): read=True is ignored
    assert plain.predict([buf.getvalue()], read=True)[0]["registration"] is None


def test_make_score_reads_on_request(tiny_model_dir, tmp_path):
    """``python -m model score --registration`` (``make score REGISTRATION=1``) fills the
    registration columns; without a registry it stops with a message and exit code 2."""
    import csv
    import os
    import subprocess
    import sys

    images = tmp_path / "images"
    images.mkdir()
    text_image().save(images / "d-abyi.png")
    Image.new("RGB", (640, 400), "skyblue").save(images / "sky.png")
    registry = tmp_path / "registry.csv"
    registry.write_text("registration,icao_type,description\nD-ABYI,B748,BOEING 747-8\n")
    cmd = [sys.executable, "-m", "model", "score", "--images", str(images), "--model-dir", str(tiny_model_dir),
           "--no-progress", "--registration"]
    env = {**os.environ, "PLANESPOTTER_REGISTRY": str(registry)}
    out = tmp_path / "scores.csv"
    subprocess.run(cmd + ["--out", str(out)], env=env, check=True, capture_output=True, timeout=300)
    rows = {r["file"]: r for r in csv.DictReader(out.open())}
    assert rows["d-abyi.png"]["registration"] == "D-ABYI" and rows["d-abyi.png"]["registration_icao_type"] == "B748"
    assert rows["d-abyi.png"]["registration_agrees"] in ("true", "false")
    assert len(rows["d-abyi.png"]["registration_box"].split()) == 4
    assert rows["sky.png"]["registration"] == "" and rows["sky.png"]["answer_source"] == "image"
    off = subprocess.run(cmd + ["--out", str(tmp_path / "x.csv")], env={**env, "PLANESPOTTER_REGISTRY": ""},
                         capture_output=True, text=True, timeout=300)
    assert off.returncode == 2 and "needs a registry" in off.stderr
    bad = subprocess.run(cmd + ["--out", str(tmp_path / "y.csv")], env={**env, "PLANESPOTTER_REGISTRY": str(images / "sky.png")},
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "sky.png" in bad.stderr
