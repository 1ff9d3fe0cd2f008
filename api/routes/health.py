"""Liveness and readiness: ``/healthz`` (process up), ``/readyz`` (models loaded and warmed),
``/ping`` (plumber/vetiver style)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)

#: OpenAPI components of this module's operations (collected by :func:`api.spec.build_spec`).
SCHEMAS: dict[str, dict] = {
    "Readiness": {
        "type": "object", "required": ["status", "reason"],
        "properties": {"status": {"type": "string", "enum": ["loading", "ready", "failed"]},
                       "reason": {"type": "string"}, "model_version": {"type": "string"},
                       "registration": {"$ref": "#/components/schemas/RegistrationStatus"}},
    },
}


@bp.get("/healthz")
def healthz():
    """200 while the process answers, whatever the model state.
    ---
    get:
      tags: [operations]
      summary: Liveness (the process answers)
      description: 200 whatever the model state, also while loading or after a failed load
        (a broken model must not make Kubernetes restart the pod in a loop).
      responses:
        "200":
          description: alive
          content:
            application/json:
              schema:
                type: object
                required: [status]
                properties:
                  status: {type: string, enum: [alive]}
    """
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz():
    """200 once the models are loaded and warmed up; 503 with the reason before or on failure.
    ---
    get:
      tags: [operations]
      summary: Readiness (models loaded and warmed up)
      responses:
        "200":
          description: ready
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Readiness"}
        "503":
          description: loading, or the model failed to load (`reason` says why)
          content:
            application/json:
              schema:
                allOf:
                  - {$ref: "#/components/schemas/Error"}
                  - {$ref: "#/components/schemas/Readiness"}
    """
    engine = current_app.extensions["engine"]
    body = {"status": engine.state, "reason": engine.reason}
    if engine.ready:
        body["model_version"] = engine.cascade.version
        body["registration"] = engine.registration()
        return jsonify(body)
    resp = jsonify(error="not_ready", message=engine.reason, **body)
    resp.status_code = 503
    return resp


@bp.get("/ping")
def ping():
    """Plumber/vetiver-style ping.
    ---
    get:
      tags: [operations, plumber]
      summary: Ping (vetiver/plumber style liveness)
      responses:
        "200":
          description: online
          content:
            application/json:
              schema:
                type: object
                required: [status]
                properties:
                  status: {type: string, enum: [online]}
    """
    return jsonify(status="online")
