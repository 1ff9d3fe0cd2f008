"""Liveness and readiness: ``/healthz`` (process up), ``/readyz`` (models loaded and warmed),
``/ping`` (plumber/vetiver style)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 while the process answers, whatever the model state."""
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz():
    """200 once the models are loaded and warmed up; 503 with the reason before or on failure."""
    engine = current_app.extensions["engine"]
    body = {"status": engine.state, "reason": engine.reason}
    if engine.ready:
        body["model_version"] = engine.cascade.version
        return jsonify(body)
    resp = jsonify(error="not_ready", message=engine.reason, **body)
    resp.status_code = 503
    return resp


@bp.get("/ping")
def ping():
    """Plumber/vetiver-style ping."""
    return jsonify(status="online")
