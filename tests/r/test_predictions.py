"""Prediction parity: cascade probabilities from R (reticulate, r/cascade.R's routing) and from
Python (model.cascade) for the same images at the same batch size — max abs diff <= 1e-6 — and
the predict() result serialised to the same JSON bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import preprocessing as pp
from model.cascade import Cascade
from rparity import ORACLE_BATCH, r_to_numpy, rget

TOLERANCE = 1e-6
BATCH = ORACLE_BATCH  # r/oracle.R's --batch-size


@pytest.fixture(scope="module")
def python_side(oracle, parity_model_dir):
    files, _ = oracle
    cascade = Cascade.load(parity_model_dir)
    x = np.stack([pp.to_array(f, cascade.spec) for f in files])
    batches = [list(range(i, min(i + BATCH, len(files)))) for i in range(0, len(files), BATCH)]
    p_m, p_t = [], {}
    for b in batches:
        pm, pt = cascade.probabilities(x[b])
        p_m.append(pm)
        for m, v in pt.items():
            p_t.setdefault(m, []).append(v)
    return cascade, x, batches, np.concatenate(p_m), {m: np.concatenate(v) for m, v in p_t.items()}


def test_probabilities_match(oracle, python_side, parity):
    _, res = oracle
    cascade, _, _, py_pm, py_pt = python_side
    r_pm = r_to_numpy(rget(res, "p_m"))
    d = {"manufacturer": float(np.abs(py_pm - r_pm).max())}
    nan_same = True
    for m, v in py_pt.items():
        rv = r_to_numpy(rget(res, "p_t", m))
        nan_same &= bool((np.isnan(v) == np.isnan(rv)).all())
        both = ~np.isnan(v)
        d[f"type_{m}"] = float(np.abs(v[both] - rv[both]).max()) if both.any() else 0.0
    worst = max(d.values())
    ok = parity.check("predictions.probabilities", worst <= TOLERANCE and nan_same, tolerance=TOLERANCE,
                      max_abs_diff=worst, per_model=d, routing_equal=nan_same, images=len(py_pm),
                      batch_size=BATCH, model_version=cascade.version)
    parity.context["model_version"] = cascade.version
    assert ok, d


def test_predict_json_bytes_equal(oracle, python_side, parity):
    _, res = oracle
    cascade, x, batches, _, _ = python_side
    py = json.dumps(cascade.predict(x[batches[0]], top_k=3), separators=(",", ":"))
    rj = rget(res, "predict_json")[0]
    ok = parity.check("predictions.predict_json_bytes", py == rj, bytes_python=len(py), bytes_r=len(rj))
    assert ok, (py[:400], rj[:400])


def test_other_r_preprocessing_paths(oracle, python_side, parity):
    """Stage-1 probabilities when R preprocesses by the pure-R path (equal tensors: equal
    probabilities) and by the R original's keras path (one-ulp input differences; EXIF and RGBA
    images see a different picture)."""
    files, res = oracle
    _, _, _, py_pm, _ = python_side
    pure = r_to_numpy(rget(res, "p_m_pure"))
    keras = r_to_numpy(rget(res, "p_m_keras"))
    names = [f.name for f in files]
    plain = [i for i, n in enumerate(names) if not n.startswith("edge_")]
    edge = [i for i, n in enumerate(names) if n.startswith("edge_")]
    d_pure = float(np.abs(py_pm - pure).max())
    d_keras_plain = float(np.abs(py_pm[plain] - keras[plain]).max())
    d_keras_edge = float(np.abs(py_pm[edge] - keras[edge]).max())
    parity.check("predictions.keras_r_original_path", d_keras_plain <= TOLERANCE, known_difference=True,
                 max_abs_diff_plain_jpegs=d_keras_plain, max_abs_diff_edge_images=d_keras_edge)
    ok = parity.check("predictions.pure_r_path", d_pure <= TOLERANCE, max_abs_diff=d_pure)
    assert ok, d_pure
    assert d_keras_plain <= TOLERANCE, d_keras_plain
