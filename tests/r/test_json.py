"""The R JSON writer (r/json.R) that lets the R server's bodies be compared byte for byte: floats
as Python's repr(), strings as json.dumps(ensure_ascii=True), reprs of str as Python's."""

from __future__ import annotations

import json

import numpy as np


def test_float_repr_matches_python(r, parity):
    rng = np.random.default_rng(7)
    probs = rng.random(600).astype(np.float32).astype(np.float64)
    values = np.concatenate([
        probs, probs * rng.random(600).astype(np.float32),              # probabilities and joints
        10.0 ** rng.uniform(-30, 30, 300), rng.normal(size=100) * 1e6,
        [0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1 / 3, 100.0, 1e15, 1e16, 1e-4, 1e-5, 123456789.0, 5e-324,
         2.0 ** -1022, 1.7976931348623157e308, 0.29600934863095407, 2.537319855656025e+26, 9007199254740993.0],
    ])
    out = list(r.r("function(v) vapply(v, py_float_repr, '')")(r.FloatVector(values)))
    bad = [(repr(v), o) for v, o in zip(values.tolist(), out) if repr(v) != o]
    ok = parity.check("json.float_repr", not bad, values=len(values), mismatches=bad[:10])
    assert ok, bad[:10]


def test_json_and_str_repr_match_python(r, parity):
    doc = {"model_version": "20000101T000000Z", "n": 3, "unsure": True, "none": None,
           "text": "é ü \u2028 😀 \"q\" \\ \n\t\x01", "probs": [0.5269313454627991, 1e-07, 0.0],
           "nested": [{"a": [], "b": {}}]}
    encode = r.r("""function() py_json(list(
        model_version = "20000101T000000Z", n = 3L, unsure = TRUE, none = NULL,
        text = "\u00e9 \u00fc \u2028 \U0001F600 \\"q\\" \\\\ \\n\\t\\001", probs = c(0.5269313454627991, 1e-07, 0.0),
        nested = list(list(a = list(), b = json_object()))))""")
    r_json = encode()[0]
    py_json = json.dumps(doc, separators=(",", ":"))
    strings = ["nope.jpg", "it's.jpg", "say \"hi\"", "both ' \"", "tab\there", "é.jpg", "back\\slash", ""]
    r_reprs = [r.r["py_str_repr"](s)[0] for s in strings]
    bad = [(s, repr(s), x) for s, x in zip(strings, r_reprs) if repr(s) != x]
    ok = parity.check("json.encoder", r_json == py_json and not bad, json_equal=r_json == py_json,
                      repr_mismatches=bad)
    assert r_json == py_json, (r_json, py_json)
    assert ok, bad
