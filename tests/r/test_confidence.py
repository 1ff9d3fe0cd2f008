"""Parity of the confidence rule (model.confidence, model.cascade.Cascade.stage1_signals /
forward_signals / unsure_reasons) in R (r/cascade.R: the feature bank, model.confidence.feature_model,
knn_distance and zoom through reticulate; routing, "unsure" and ``ps_unsure_reasons`` in R).

Tiny real versions of the exported layout (stage 1 as tests/model/test_confidence.py's: the mean
R, G, B of the image are its penultimate features, logits 8 (R - G) for Airbus, 8 (G - R) for
Boeing; stage 2 answers from the mean blue), saved with ``model.io.save_version(..., bank=...)``:

- ``rule``: novelty (threshold 0.8, k 2, a bank of the usual photos' colours) and views;
- ``rule_flip``: the same with flip TTA and ``types_close`` null (never "two types are close");
- ``plain``: no ``confidence`` in labels.json (the defaults: no novelty, no views, types_close 0.5).

On photos that are sure, unusual, disagreeing under the zoom, low-confidence, two close types and
unusual *and* close: the whole R pipeline (``r/oracle_images.R``) against
``json.dumps(Pipeline.predict(...))`` byte for byte (probabilities, ``unsure``, ``unsure_reasons``);
``ps_unsure_reasons`` against ``Cascade.unsure_reasons`` on every combination of its inputs;
``ps_fuse`` clearing the reasons; the R plumber server against our gunicorn server on the ``rule``
version (body bytes, ``unsure_reasons`` a JSON array, ``[]`` included) and the R client's
``unsure_reasons`` column from both.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import requests
from rparity import ORACLE_BATCH, R_DIR, oracle_images
from rserver import RServer
from tinymodels import colour_stage1

from client.server import Server
from model import confidence as conf
from model import io as mio
from model import preprocessing as pp
from model.cascade import Cascade
from model.pipeline import Pipeline

SIZE = 20
TYPES = ["A320", "A388", "A350 family"], ["B738", "B744", "B777 family"]
LABELS = {"manufacturer": ["Airbus", "Boeing"], "types": {"Airbus": TYPES[0], "Boeing": TYPES[1]},
          "families": {"Airbus": {"A320": "A320", "A388": "A380", "A350 family": "A350"},
                       "Boeing": {"B738": "B737", "B744": "B747", "B777 family": "B777"}}}
#: The usual photos' mean colours (the bank of the rule versions, each twice: k = 2).
USUAL = [[0.9, 0.1, 0.2], [0.1, 0.9, 0.2], [0.5, 0.49, 0.2], [0.5, 0.49, 0.1]]
RULES = {"rule": {"novelty_threshold": 0.8, "k": 2, "views": True, "types_close": 0.5},
         "rule_flip": {"novelty_threshold": 0.8, "k": 2, "views": True, "types_close": None},
         "plain": None}
#: name -> (mean colour, centre colour or None): the test photos (PNG, SIZE x SIZE).
PHOTOS = {
    "a_sure.png": ((0.9, 0.1, 0.2), None),  # Airbus at 1.00, like the training photos
    "b_unusual.png": ((0.3, 0.0, 0.9), None),  # Airbus at 0.99, but unlike every training photo
    "c_views.png": ((0.9, 0.0, 0.2), (0.0, 0.6, 0.2)),  # red frame, green centre: the zoom says Boeing
    "d_low.png": ((0.5, 0.49, 0.2), None),  # stage 1 at 0.54; Airbus sure of A320, Boeing spread
    "e_close.png": ((0.5, 0.49, 0.1), None),  # stage 1 at 0.54; A320 and A388 even
    "f_unusual_close.png": ((0.3, 0.29, 0.9), None),  # stage 1 at 0.54, unusual, A320 vs B738 close
}
#: What Python answers (checked, so that the parity comparison covers every reason).
EXPECTED = {
    "rule": [[], ["unusual_photo"], ["views_disagree"], ["low_confidence"], ["types_close"],
             ["unusual_photo", "types_close"]],
    "rule_flip": [[], ["unusual_photo"], ["views_disagree"], ["low_confidence"], ["low_confidence"],
                  ["low_confidence", "unusual_photo"]],
    "plain": [[], [], [], ["low_confidence"], ["types_close"], ["types_close"]],
}
MASK = re.compile(rb'"(timing_ms|load_seconds)":(\{[^}]*\}|[-0-9.eE+]+|null)')


def _stage1():
    return colour_stage1(SIZE)


def _stage2(name, blue, bias):
    """Leaf logits from the mean blue: ``blue * B + bias``."""
    import keras

    from model.training.calibration import calibrated

    images = keras.Input((SIZE, SIZE, 3), name="image")
    dense = keras.layers.Dense(3, name="leaf_logits")
    inner = keras.Model(images, dense(keras.layers.GlobalAveragePooling2D()(images)), name=f"{name}_logits")
    w = np.zeros((3, 3), np.float32)
    w[2] = blue
    dense.set_weights([w, np.asarray(bias, np.float32)])
    return calibrated(inner, 1.0, name)


def build_version(models_dir: Path, name: str) -> Path:
    """One of :data:`RULES`' versions (version string = ``name``). Stage 2: Airbus sure of A320 at
    B = 0.2, A320 and A388 even at B = 0.1; Boeing even over its leaves at B = 0.2, sure of B738 at B = 0.9."""
    labels = dict(LABELS)
    rule = RULES[name]
    if rule is not None:
        labels["confidence"] = rule
    if name == "rule_flip":
        labels["tta"] = "flip"
    stage2 = {"Airbus": _stage2("type_Airbus", [40, -40, 0], [0, 8, -4]),
              "Boeing": _stage2("type_Boeing", [80, 0, 0], [-16, 0, 0])}
    bank = np.asarray(USUAL * 2, np.float32) if rule is not None and rule["novelty_threshold"] is not None else None
    return mio.save_version(models_dir, _stage1(), stage2, labels, pp.PreprocessingSpec(SIZE, SIZE),
                            {"test": {}, "calibration": {}}, "# confidence parity model\n", version=name,
                            update_latest=False, bank=bank)


def write_photos(folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (rgb, centre) in PHOTOS.items():
        x = np.zeros((SIZE, SIZE, 3)) + np.asarray(rgb)
        if centre is not None:
            x[3:-3, 3:-3] = centre
        Image.fromarray(np.round(x * 255).astype(np.uint8), "RGB").save(folder / name)
        out.append(folder / name)
    return out


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    models = tmp_path_factory.mktemp("confidence-models")
    return {name: build_version(models, name) for name in RULES}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return write_photos(tmp_path_factory.mktemp("confidence-photos"))


# ---------------------------------------------------------------- the whole pipeline, byte for byte
@pytest.mark.parametrize("name", list(RULES))
def test_predict_images_json_bytes_equal(name, versions, photos, tmp_path, parity):
    rows = oracle_images(versions[name], photos, tmp_path / "r.txt", thresholds="default")
    cascade = Cascade.load(versions[name])
    assert cascade.novelty == (name != "plain") and cascade.views == (name != "plain")
    pipeline = Pipeline(cascade)
    unequal, preds = [], []
    for _, start, rj in rows:
        batch = pipeline.predict(photos[start:start + ORACLE_BATCH])
        preds += batch
        py = json.dumps(batch, separators=(",", ":"))
        if py != rj:
            unequal.append((start, py, rj))
    assert len(rows) == -(-len(photos) // ORACLE_BATCH)
    reasons = [p["unsure_reasons"] for p in preds]
    assert reasons == EXPECTED[name]  # the comparison covered every reason
    assert [p["unsure"] for p in preds] == [bool(r) for r in reasons]
    ok = parity.check(f"confidence.predict_images_json_bytes.{name}", not unequal, batches=len(rows),
                      unequal=[u[0] for u in unequal], images=len(photos), unsure_reasons=reasons,
                      stages=pipeline.stages)
    assert ok, unequal[:1]
    # the parsed R answers: the same reasons, as JSON arrays (also [] and one code)
    r_preds = [p for _, _, rj in rows for p in json.loads(rj)]
    assert [p["unsure_reasons"] for p in r_preds] == reasons


# ---------------------------------------------------------------- the rule, in pure R (rpy2)
@pytest.fixture(scope="module")
def r_cascade(r):
    """r/cascade.R sourced into rpy2's R (it defines functions only: no reticulate call)."""
    r.r(f'source("{R_DIR / "cascade.R"}")')
    return r


def test_reason_codes_are_pythons(r_cascade):
    assert list(r_cascade.r["PS_UNSURE_REASONS"]) == list(conf.REASONS)
    assert r_cascade.r["PS_BANK_FILE"][0] == conf.BANK_FILE


@pytest.mark.parametrize("labels_rule", [None, {}, {"types_close": None}, {"novelty_threshold": 0.5, "k": 3},
                                         {"novelty_threshold": 1, "views": True, "types_close": 0.25}])
def test_unsure_reasons_rule_matches_python(r_cascade, labels_rule):
    """ps_unsure_reasons (with ps_confidence_rule of the labels) against Cascade.unsure_reasons on
    every combination of stage 1's probability, the candidate pairs, the novelty and the views."""
    labels = {**LABELS, **({} if labels_rule is None else {"confidence": labels_rule})}
    rule = conf.ConfidenceRule.from_labels(labels)
    bank = np.ones((4, 3), np.float32) if rule.novelty_threshold is not None else None
    c = Cascade(None, {}, labels, pp.PreprocessingSpec(SIZE, SIZE), "v", 0.6, confidence=rule, bank=bank)
    reasons = r_cascade.r(f"""function(p_top, pairs_json, novelty_json, disagree_json) {{
      cascade <- list(threshold = 0.6, confidence = ps_confidence_rule(
                        jsonlite::parse_json('{json.dumps(labels)}', simplifyVector = FALSE)$confidence))
      cascade$novelty <- !is.null(cascade$confidence$novelty_threshold)
      pairs <- as.double(unlist(jsonlite::parse_json(pairs_json)))
      novelty <- jsonlite::parse_json(novelty_json)
      disagree <- jsonlite::parse_json(disagree_json)
      py_json(I(ps_unsure_reasons(cascade, p_top, pairs, novelty, disagree)))
    }}""")
    cases = list(itertools.product([0.55, 0.6, 0.95], [[], [0.5], [0.5, 0.3], [0.5, 0.25], [0.5, 0.125], [0.5, 0.49]],
                                   [None, 0.25, 0.5, 1.0, 1.5], [None, False, True]))
    for p_top, pairs, novelty, disagree in cases:
        py = c.unsure_reasons(p_top, [(p,) for p in pairs], novelty, disagree)
        got = json.loads(reasons(p_top, json.dumps(pairs), json.dumps(novelty), json.dumps(disagree))[0])
        assert got == py, (labels_rule, p_top, pairs, novelty, disagree)


def test_rule_defaults_match_python(r_cascade):
    f = r_cascade.r("""function(js) py_json(ps_confidence_rule(jsonlite::parse_json(js, simplifyVector = FALSE)))""")
    for d in (None, {}, {"k": 3}, {"novelty_threshold": None, "types_close": None, "views": True},
              {"novelty_threshold": 0.75, "k": 5, "views": False, "types_close": 0.5}):
        py = conf.ConfidenceRule.from_labels({"confidence": d}).as_dict()
        assert json.loads(f(json.dumps(d))[0]) == py, d


def test_fuse_clears_the_reasons(r_cascade):
    """ps_fuse: a registration that settles an unsure answer empties unsure_reasons (model.reader.fuse)."""
    from model.reader import Reading, fuse
    from model.registry import Entry

    branch = {"manufacturer": "Airbus", "manufacturer_probability": 0.55, "family": "A320", "family_probability": 0.5,
              "type": "A320", "type_probability": 0.5, "joint_probability": 0.275}
    answer = {"manufacturer": {"label": "Airbus", "probability": 0.55},
              "family": {"label": "A320", "probability": 0.5, "joint_probability": 0.275},
              "type": {"label": "A320", "probability": 0.5, "joint_probability": 0.275},
              "answer": {"level": "type", "label": "A320", "text": "Airbus A320"},
              "aircraft": {"probability": None, "threshold": None}, "box": None, "unsure": True,
              "unsure_reasons": ["unusual_photo", "types_close"], "branches": [branch],
              "top_k": [{"manufacturer": "Airbus", "family": "A320", "type": "A320", "probability": 0.275}]}
    f = r_cascade.r("""function(answer, reading) {
      a <- jsonlite::parse_json(answer, simplifyVector = FALSE)
      rd <- if (reading == "null") NULL else jsonlite::parse_json(reading, simplifyVector = FALSE)
      if (!is.null(rd)) rd$box <- as.integer(unlist(rd$box))
      py_json(ps_fuse(a, rd))
    }""")
    reading = Reading("D-AIZA", "DAIZA", Entry("D-AIZA", "A320", ""), [1, 2, 3, 4], 0.9375, 0)
    e = reading.entry
    r_reading = json.dumps({"text": reading.text, "read": reading.read, "icao_type": e.icao_type,
                            "description": e.description, "family": e.family, "manufacturer": e.manufacturer,
                            "box": reading.box, "score": reading.score, "corrections": reading.corrections})
    for rd, rrd in ((reading, r_reading), (None, "null")):
        py = json.dumps(fuse(json.loads(json.dumps(answer)), rd), separators=(",", ":"))
        assert f(json.dumps(answer), rrd)[0] == py
    assert json.loads(py)["unsure_reasons"] == ["unusual_photo", "types_close"]  # no reading: kept
    assert '"unsure":false,"unsure_reasons":[]' in f(json.dumps(answer), r_reading)[0]


# ---------------------------------------------------------------- HTTP and the R client
@pytest.fixture(scope="module")
def rule_servers(versions, photos):
    env = {"PLANESPOTTER_IMAGE_ROOT": str(photos[0].parent), "PLANESPOTTER_DEFAULT_IMAGE": photos[0].name}
    py, rs = Server(versions["rule"], env=env), RServer(versions["rule"], env=env)
    try:
        py.wait_ready()
        rs.wait_ready()
        yield py, rs
    finally:
        py.stop()
        rs.stop()


def _requests(photos):
    files = [("image", (p.name, p.read_bytes(), "image/png")) for p in photos]
    return {"metadata": ("GET", "/metadata", {}),
            "get_sure": ("GET", f"/predict?path={photos[0].name}", {}),
            "get_unusual": ("GET", f"/predict?path={photos[1].name}", {}),
            "post_all": ("POST", "/predict?top_k=2", {"files": files})}


@pytest.mark.parametrize("case", ["metadata", "get_sure", "get_unusual", "post_all"])
def test_rule_version_same_http_answer(rule_servers, photos, parity, case):
    method, path, kw = _requests(photos)[case]
    py, rs = rule_servers
    a = requests.request(method, py.url + path, timeout=120, **kw)
    b = requests.request(method, rs.url + path, timeout=120, **kw)
    equal = a.status_code == b.status_code == 200 and MASK.sub(b"", a.content) == MASK.sub(b"", b.content)
    ok = parity.check(f"http.confidence_rule.{case}", equal, request=f"{method} {path}",
                      status=[a.status_code, b.status_code], body_bytes=[len(a.content), len(b.content)])
    assert ok, (a.content[:600], b.content[:600])
    body = b.json()
    if case == "metadata":
        assert body["stages"][:4] == ["decode", "classify", "novelty", "views"]  # then "read" with a registry
        assert list(body["unsure_reasons"]) == list(conf.REASONS)
    elif case == "post_all":
        assert [p["unsure_reasons"] for p in body["predictions"]] == EXPECTED["rule"]
    else:  # one image: at top level too, a JSON array (never a bare string, never {})
        want = EXPECTED["rule"][0 if case == "get_sure" else 1]
        assert body["unsure_reasons"] == want and body["predictions"][0]["unsure_reasons"] == want
        assert (b'"unsure_reasons":[]' if not want else b'"unsure_reasons":["unusual_photo"]') in b.content


@pytest.mark.parametrize("which", ["python", "r"])
def test_r_client_unsure_reasons_column(r, rule_servers, photos, parity, which):
    url = rule_servers[0 if which == "python" else 1].url
    df = r.r["ps_classify_files"](url, r.StrVector([str(p) for p in photos]), top_k=2)
    got = list(df.rx2("unsure_reasons"))
    unsure = [bool(v) for v in df.rx2("unsure")]
    want = [",".join(x) for x in EXPECTED["rule"]]
    ok = parity.check(f"client.unsure_reasons_column.{which}_server", got == want and unsure == [bool(x) for x in want],
                      unsure_reasons=got)
    assert ok, got
