"""Parity of the registration reader's join to the answer (model.reader.fuse, model.pipeline.Pipeline
.read): r/cascade.R's ``ps_fuse`` against ``fuse`` on hand-made answers covering every rule, and
the whole R pipeline with reading (``ps_predict_images(read = TRUE)``: decode again, read inside
the box through reticulate, ``ps_fuse``) against ``Pipeline(cascade, registry).predict(read=True)``
byte for byte, on the feature model (crop box, Other, level none with the gate at 1.0) and the
parity model. The HTTP side (``?registration=``, a JSON body's ``registration``) is in test_http.py
and test_features.py."""

from __future__ import annotations

import copy
import json

import pytest
from rparity import ORACLE_BATCH, R_DIR, SMOKE_DIR, oracle_images, registration_png, require_registry

from model.cascade import Cascade
from model.pipeline import Pipeline
from model.reader import Reading, fuse
from model.registry import Entry


def _branch(m, p, family=None, fp=None, t=None, tp=None):
    joint = p * tp if tp is not None else p * fp if fp is not None else p
    return {"manufacturer": m, "manufacturer_probability": p, "family": family, "family_probability": fp,
            "type": t, "type_probability": tp, "joint_probability": joint}


def _answer(branches, unsure=False, none=False, box=None):
    """An answer shaped as Cascade.predict's, from its branches (the first is the best)."""
    b = branches[0]
    level = "none" if none else "type" if b["type"] else "family" if b["family"] else "manufacturer"
    label = {"none": "none", "type": b["type"], "family": f"{b['family']} family",
             "manufacturer": b["manufacturer"]}[level]
    head = ({"manufacturer": {"label": None, "probability": None},
             "family": {"label": None, "probability": None, "joint_probability": None},
             "type": {"label": None, "probability": None, "joint_probability": None}} if none else
            {"manufacturer": {"label": b["manufacturer"], "probability": b["manufacturer_probability"]},
             "family": {"label": b["family"], "probability": b["family_probability"],
                        "joint_probability": None if b["family"] is None
                        else b["manufacturer_probability"] * b["family_probability"]},
             "type": {"label": b["type"], "probability": b["type_probability"],
                      "joint_probability": b["joint_probability"] if b["type"] else None}})
    return {**head, "answer": {"level": level, "label": label, "text": f"words for {label}"},
            "aircraft": {"probability": 0.25 if none else 0.875, "threshold": 0.5}, "box": box,
            "unsure": unsure and not none, "unsure_reasons": ["low_confidence"] if unsure and not none else [],
            "branches": branches,
            "top_k": [{"manufacturer": b["manufacturer"], "family": b["family"], "type": b["type"],
                       "probability": b["joint_probability"]}]}


def _reading(reg, icao, description, box=(10, 20, 130, 60)):
    return Reading(reg, reg.replace("-", ""), Entry(reg, icao, description), list(box), 0.9375, 1)


BOEING = _branch("Boeing", 0.875, "B747", 0.75, "B744", 0.625)
AIRBUS = _branch("Airbus", 0.75, "A380", 0.5, "A388", 0.5)
AIRBUS_UNSURE = _branch("Airbus", 0.5, "A320", 0.75)
BOEING_SECOND = _branch("Boeing", 0.375, "B737", 0.5, "B738", 0.5)
OTHER = _branch("Other", 0.75)

#: name -> (answer, reading or None): every rule of fuse.
CASES = {
    "no_reading": (_answer([BOEING]), None),
    "sure_agrees": (_answer([BOEING], box=[1, 2, 300, 200]), _reading("D-ABYI", "B748", "BOEING 747-8")),
    "sure_agrees_same_airbus": (_answer([AIRBUS]), _reading("D-AIMA", "A388", "AIRBUS A-380-800")),
    "sure_disagrees": (_answer([AIRBUS]), _reading("D-ABYI", "B748", "BOEING 747-8")),
    "unsure_second_branch": (_answer([AIRBUS_UNSURE, BOEING_SECOND], unsure=True),
                             _reading("N37277", "B738", "BOEING 737-800")),
    "unsure_first_branch": (_answer([AIRBUS_UNSURE, BOEING_SECOND], unsure=True),
                            _reading("D-AIZA", "A320", "")),
    "unsure_not_a_branch": (_answer([AIRBUS_UNSURE, BOEING_SECOND], unsure=True),
                            _reading("PR-ABC", "E190", "EMBRAER ERJ-190")),
    "not_an_aircraft": (_answer([BOEING], none=True), _reading("D-ABYI", "B748", "BOEING 747-8")),
    "other_agrees": (_answer([OTHER]), _reading("PR-ABC", "E190", "EMBRAER ERJ-190")),
    "other_agrees_no_description": (_answer([OTHER]), _reading("PR-ABC", "E190", "")),
    "other_reads_boeing": (_answer([OTHER]), _reading("D-ABYI", "B748", "BOEING 747-8")),
    "sure_agrees_older_family": (_answer([BOEING]), _reading("N1", "B703", "")),
}


def _as_r_reading(reading: Reading | None) -> str:
    """ps_reading()'s list for ``reading``, as JSON (null for None)."""
    if reading is None:
        return "null"
    e = reading.entry
    return json.dumps({"text": reading.text, "read": reading.read, "icao_type": e.icao_type,
                       "description": e.description, "family": e.family, "manufacturer": e.manufacturer,
                       "box": reading.box, "score": reading.score, "corrections": reading.corrections})


@pytest.fixture(scope="module")
def r_fuse(r):
    """ps_fuse through rpy2 (r/cascade.R defines functions only: no reticulate call), JSON in and out."""
    r.r(f'source("{R_DIR / "cascade.R"}")')
    return r.r("""function(answer, reading) {
      a <- jsonlite::parse_json(answer, simplifyVector = FALSE)
      rd <- if (reading == "null") NULL else jsonlite::parse_json(reading, simplifyVector = FALSE)
      if (!is.null(rd)) rd$box <- as.integer(unlist(rd$box))
      py_json(ps_fuse(a, rd))
    }""")


@pytest.mark.parametrize("case", list(CASES))
def test_fuse_matches_python(r_fuse, parity, case):
    answer, reading = CASES[case]
    py = json.dumps(fuse(copy.deepcopy(answer), reading), separators=(",", ":"))
    rj = r_fuse(json.dumps(answer), _as_r_reading(reading))[0]
    ok = parity.check(f"registration.fuse.{case}", py == rj, bytes_python=len(py), bytes_r=len(rj))
    assert ok, (py, rj)


def test_fuse_cases_cover_every_rule():
    out = {k: fuse(copy.deepcopy(a), r) for k, (a, r) in CASES.items()}
    assert out["no_reading"]["registration"] is None and out["no_reading"]["answer"]["source"] == "image"
    changed = {k for k, v in out.items() if v["answer"]["source"] == "registration"}
    assert changed == {"sure_agrees", "sure_agrees_same_airbus", "unsure_second_branch", "unsure_first_branch",
                       "other_agrees", "other_agrees_no_description", "sure_agrees_older_family"}
    assert not out["sure_disagrees"]["registration"]["agrees"] and not out["not_an_aircraft"]["registration"]["agrees"]
    assert out["other_agrees"]["answer"]["text"] == "E190 (EMBRAER ERJ-190)"
    assert out["unsure_second_branch"]["manufacturer"]["probability"] == 0.375
    # a registration that settles an unsure answer clears its reasons; one that does not keeps them
    assert out["unsure_second_branch"]["unsure_reasons"] == [] and out["unsure_second_branch"]["unsure"] is False
    assert out["unsure_not_a_branch"]["unsure_reasons"] == ["low_confidence"]


@pytest.fixture(scope="module")
def read_files(tmp_path_factory, feature_image_dir) -> list:
    """Images with registrations the reader finds (the generated one, two smoke photos read in
    place: one decoded at a reduced DCT scale) and the feature images."""
    painted = tmp_path_factory.mktemp("registration") / "painted.png"
    painted.write_bytes(registration_png())
    smoke = [SMOKE_DIR / n for n in ("airbus_a340-300_lufthansa.jpg", "boeing_737_underside.jpg")]
    return [painted, *smoke, *sorted(feature_image_dir.iterdir())]


@pytest.mark.parametrize("which", ["feature", "parity"])
def test_predict_images_read_json_bytes_equal(which, request, read_files, tmp_path, parity):
    registry = require_registry()
    model_dir = request.getfixturevalue("feature_model_dir" if which == "feature" else "parity_model_dir")
    thresholds = "default,1.0" if which == "feature" else "default"
    rows = oracle_images(model_dir, read_files, tmp_path / "r.txt", thresholds=thresholds, read=True)
    cascade = Cascade.load(model_dir)
    pipeline = Pipeline(cascade, registry)
    own = cascade.aircraft_threshold
    unequal, read, sources = [], 0, set()
    for t, start, rj in rows:
        cascade.aircraft_threshold = own if t == "default" else float(t)
        preds = pipeline.predict(read_files[start:start + ORACLE_BATCH], read=True)
        read += sum(p["registration"] is not None for p in preds)
        sources |= {p["answer"]["source"] for p in preds}
        if json.dumps(preds, separators=(",", ":")) != rj:
            unequal.append(f"{t}:{start}")
    assert len(rows) == len(thresholds.split(",")) * -(-len(read_files) // ORACLE_BATCH)
    assert read > 0  # the comparison covered readings
    ok = parity.check(f"registration.predict_images_read_json_bytes.{which}_model", not unequal, batches=len(rows),
                      unequal=unequal, readings=read, sources=sorted(sources), images=len(read_files),
                      thresholds=thresholds.split(","), model_version=cascade.version)
    assert ok, unequal
