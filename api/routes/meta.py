"""``/metadata``: model version, labels, preprocessing spec and checksum, training metrics."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from model.confidence import REASON_TEXT

from ..errors import APIError
from ..spec import PROB, STR_OR_NULL

bp = Blueprint("meta", __name__)

#: OpenAPI components of this module's operations (collected by :func:`api.spec.build_spec`).
SCHEMAS: dict[str, dict] = {
    "Metadata": {
        "type": "object",
        "required": ["model_version", "labels", "preprocessing", "threshold", "metrics"],
        "properties": {
            "model_version": {"type": "string"}, "created": STR_OR_NULL,
            "labels": {"type": "object", "properties": {
                "manufacturer": {"type": "array", "items": {"type": "string"}},
                "types": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                "families": {"type": "object", "description": "per manufacturer: stage-2 leaf -> family",
                             "additionalProperties": {"type": "object",
                                                      "additionalProperties": {"type": "string"}}},
                "type_threshold": PROB,
                "aircraft_threshold": {**PROB, "description": "the localizer's gate (versions with one): "
                                                               "aircraft probability below it answers `none`"},
                "tta": {"type": "string", "enum": ["flip"],
                        "description": "test-time augmentation: `flip` averages the image and its mirror"},
                "confidence": {"type": "object", "description": "when an answer is unsure beyond stage 1's "
                                                                "probability (model.confidence.ConfidenceRule)",
                               "properties": {"novelty_threshold": {"type": "number", "nullable": True},
                                              "k": {"type": "integer"}, "views": {"type": "boolean"},
                                              "types_close": {"type": "number", "nullable": True}}}}},
            "preprocessing": {"type": "object", "description": "PreprocessingSpec and reference_sha256"},
            "threshold": PROB,
            "metrics": {"type": "object"},
            "load_seconds": {"type": "number", "nullable": True},
            "stages": {"type": "array", "items": {"type": "string"}, "example": ["decode", "gate", "classify"],
                       "description": "the inference pipeline's stages for this version, in order "
                                      "(model.pipeline.Pipeline.stages): `decode`, `gate` (the \"not an "
                                      "aircraft\" localizer), `crop` (cut to the aircraft), `classify`, "
                                      "`tta:<kind>`, `novelty` (unusual photos are unsure), `views` (the "
                                      "mirror image and a zoomed crop must agree), `read` (the registration "
                                      "reader, on request)"},
            "unsure_reasons": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "each unsure reason's code (`UnsureReason`) in words"},
            "registration": {"$ref": "#/components/schemas/RegistrationStatus"},
        },
    },
    "RegistrationStatus": {
        "type": "object", "required": ["available", "registry", "entries"],
        "description": "the registration reader: `available` when a registry is loaded "
                       "(`PLANESPOTTER_REGISTRY`, default the shared registry when present); without "
                       "one, `?registration=1` answers `registration: null`",
        "properties": {"available": {"type": "boolean"}, "registry": STR_OR_NULL,
                       "entries": {"type": "integer", "nullable": True}},
    },
}


@bp.get("/metadata")
def metadata():
    """Describe the loaded model version (503 while not ready).
    ---
    get:
      tags: [native]
      summary: Model version, labels, preprocessing spec and checksum, training metrics
      responses:
        "200":
          description: the loaded model version
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Metadata"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    engine = current_app.extensions["engine"]
    if not engine.ready:
        raise APIError(503, "not_ready", engine.reason)
    c = engine.cascade
    info = c.info or {}
    metrics = info.get("metrics", {})
    return jsonify(
        model_version=c.version,
        created=info.get("created"),
        labels=c.labels,
        preprocessing=info.get("preprocessing", c.spec.to_dict()),
        threshold=c.threshold,
        metrics={"test": metrics.get("test") or {},
                 "calibration": {k: {kk: v.get(kk) for kk in ("temperature", "val_ece_before", "val_ece_after")}
                                 for k, v in (metrics.get("calibration") or {}).items() if isinstance(v, dict)}},
        load_seconds=engine.load_seconds,
        stages=engine.pipeline.stages,
        unsure_reasons=REASON_TEXT,
        registration=engine.registration(),
    )
