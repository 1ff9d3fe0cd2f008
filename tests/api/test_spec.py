"""The OpenAPI document assembled in process (:mod:`api.spec`): valid, every ``$ref`` resolves,
each route module's components are its own, and a name defined twice is refused."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest
from openapi_spec_validator import validate

from api import create_app, spec
from api.routes import health, meta, oip, predict, tfserving


@pytest.fixture(scope="module")
def app():
    return create_app({"MODEL_DIR": "/nonexistent"}, start_engine=False)


def test_spec_is_valid_and_every_ref_resolves(app):
    doc = spec.build_spec(app)
    validate(doc)
    refs = set(re.findall(r'"#/components/(\w+)/(\w+)"', json.dumps(doc)))
    missing = [(kind, name) for kind, name in refs if name not in doc["components"].get(kind, {})]
    assert not missing, missing
    # every schema a route module defines is used somewhere (no orphan components)
    used = {name for kind, name in refs if kind == "schemas"}
    assert set(doc["components"]["schemas"]) <= used | {"Error"}


def test_components_come_from_the_route_modules(app):
    schemas, parameters = spec.route_components(app)
    for module in (spec, health, meta, predict, oip, tfserving):
        for name in module.SCHEMAS:
            assert schemas[name] is module.SCHEMAS[name]
    assert set(parameters) == {"top_k", "model_name", "registration"}
    assert "PredictResponse" in predict.SCHEMAS and "OipInferRequest" in oip.SCHEMAS
    assert "TfPredictResponse" in tfserving.SCHEMAS and "Metadata" in meta.SCHEMAS


def test_a_component_defined_twice_is_refused(app, monkeypatch):
    clash = types.ModuleType("api.routes._clash")
    clash.SCHEMAS = {"Readiness": {"type": "object"}}

    def view():
        """Nothing."""

    view.__module__ = clash.__name__
    monkeypatch.setitem(sys.modules, clash.__name__, clash)
    monkeypatch.setitem(app.view_functions, "clash", view)
    with pytest.raises(ValueError, match="redefines OpenAPI components"):
        spec.route_components(app)
