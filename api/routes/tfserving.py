"""TensorFlow Serving REST style: ``GET /v1/models/{name}`` (model status) and
``POST /v1/models/{name}:predict``.

Predict takes TF Serving's binary convention, a JSON object ``{"b64": "<base64>"}`` per encoded
image, in either request format:

- row ("instances"): ``{"instances": [{"b64": ...}, ...]}`` or with a named input
  ``{"instances": [{"image": {"b64": ...}}, ...]}`` → ``{"predictions": [{<outputs>}, ...]}``;
- columnar ("inputs"): ``{"inputs": [{"b64": ...}, ...]}`` or ``{"inputs": {"image": [...]}}`` →
  ``{"outputs": {"manufacturer": [...], ...}}``.

The outputs are those of :func:`api.inference.flat_outputs` (``answer_level`` ``type`` / ``family``
/ ``manufacturer`` / ``none``, ``answer_text``, ``aircraft_probability`` -1.0 without a localizer,
``box`` four ints or four -1 without a crop). ``signature_name`` is accepted and
must be ``serving_default`` when given. The model version is the version folder's name (a string,
where TF Serving uses an integer).
"""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from .. import inference
from ..errors import APIError
from ..spec import PROB

bp = Blueprint("tfserving", __name__, url_prefix="/v1")

#: OpenAPI components of this module's operations (collected by :func:`api.spec.build_spec`).
SCHEMAS: dict[str, dict] = {
    "TfModelStatus": {
        "type": "object", "required": ["model_version_status"],
        "properties": {"model_version_status": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "status"],
            "properties": {"version": {"type": "string"},
                           "state": {"type": "string", "enum": ["LOADING", "AVAILABLE", "END"]},
                           "status": {"type": "object", "properties": {"error_code": {"type": "string"},
                                                                       "error_message": {"type": "string"}}}}}}},
    },
    "TfPredictRequest": {
        "type": "object",
        "description": 'row format `{"instances": [{"b64": ...}]}` or columnar `{"inputs": [{"b64": ...}]}` '
                       '(a named input `{"image": {"b64": ...}}` is accepted in both)',
        "properties": {"signature_name": {"type": "string", "enum": ["serving_default"]},
                       "instances": {"type": "array", "items": {"type": "object"}},
                       "inputs": {},
                       "registration": {"type": "boolean", "description": "also read the registration"}},
    },
    "FlatOutputs": {
        "type": "object",
        "required": ["manufacturer", "manufacturer_probability", "family", "family_probability", "type",
                     "type_probability", "answer", "joint_probability", "unsure", "unsure_reasons", "answer_level",
                     "answer_text",
                     "aircraft_probability", "box", "answer_source", "registration", "registration_icao_type",
                     "registration_agrees", "registration_box"],
        "description": "one image's outputs (OIP v2 infer, TF Serving predict); a level the answer does not "
                       'reach is "" with probability 0.0',
        "properties": {"manufacturer": {"type": "string", "description": '"" for answer level `none`'},
                       "manufacturer_probability": PROB,
                       "family": {"type": "string"}, "family_probability": PROB,
                       "type": {"type": "string"}, "type_probability": PROB,
                       "answer": {"type": "string", "example": "B777 family"},
                       "joint_probability": {**PROB, "description": "0.0 for answer level `none`"},
                       "unsure": {"type": "boolean"},
                       "unsure_reasons": {"type": "string", "example": "unusual_photo,views_disagree",
                                          "description": "why the answer is unsure: codes of "
                                                         "`UnsureReason` joined by ','; \"\" when sure"},
                       "answer_level": {"type": "string", "enum": ["type", "family", "manufacturer", "none"]},
                       "answer_text": {"type": "string", "example": "not an aircraft"},
                       "aircraft_probability": {"type": "number", "minimum": -1, "maximum": 1,
                                                "description": "the localizer's aircraft probability; -1.0 "
                                                               "when the version has no localizer"},
                       "box": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "integer"},
                               "description": "[left, top, right, bottom] in the uploaded image's pixels; "
                                              "[-1, -1, -1, -1] when the answer came from the whole image"},
                       "answer_source": {"type": "string", "enum": ["image", "registration"]},
                       "registration": {"type": "string", "example": "D-ABYI",
                                        "description": '"" when no registration was read'},
                       "registration_icao_type": {"type": "string", "example": "B748"},
                       "registration_agrees": {"type": "boolean"},
                       "registration_box": {"type": "array", "minItems": 4, "maxItems": 4,
                                            "items": {"type": "integer"},
                                            "description": "the text's box; [-1, -1, -1, -1] when none"}},
    },
    "TfPredictResponse": {
        "type": "object", "required": ["model_version"],
        "properties": {"model_version": {"type": "string"},
                       "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/FlatOutputs"}},
                       "outputs": {"type": "object", "additionalProperties": {"type": "array", "items": {}}}},
    },
}


def _check_name(name: str):
    if name != current_app.config["MODEL_NAME"]:
        raise APIError(404, "model_not_found", f"no model named {name!r} (this server serves "
                                               f"{current_app.config['MODEL_NAME']!r})")
    return current_app.extensions["engine"]


@bp.get("/models/<name>")
def model_status(name):
    """TF Serving model status.
    ---
    get:
      tags: [tf-serving]
      summary: Model version status
      parameters:
        - model_name
      responses:
        "200":
          description: state of the served version (AVAILABLE, LOADING or END after a failed load)
          content:
            application/json:
              schema: {$ref: "#/components/schemas/TfModelStatus"}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    engine = _check_name(name)
    if engine.ready:
        state, code, msg, version = "AVAILABLE", "OK", "", engine.cascade.version
    elif engine.state == "loading":
        state, code, msg, version = "LOADING", "OK", "", ""
    else:
        state, code, msg, version = "END", "UNAVAILABLE", engine.reason, ""
    return jsonify(model_version_status=[{"version": version, "state": state,
                                          "status": {"error_code": code, "error_message": msg}}])


def _b64_item(item, where: str) -> bytes:
    if isinstance(item, dict) and len(item) == 1 and "b64" not in item:
        item = next(iter(item.values()))  # a named input: {"image": {"b64": ...}}
    if not isinstance(item, dict) or "b64" not in item:
        raise APIError(400, "bad_json", f'{where} must be {{"b64": "<base64 image>"}}')
    return inference.b64decode(item["b64"], f"{where}.b64")


@bp.post("/models/<name>:predict")
def predict(name):
    """TF Serving predict on base64 images.
    ---
    post:
      tags: [tf-serving]
      summary: Classify images (TF Serving REST predict, row or columnar format)
      parameters:
        - model_name
        - registration
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/TfPredictRequest"}
      responses:
        "200":
          description: |
            `predictions` (row format) or `outputs` (columnar format), the outputs of OIP v2's
            infer: `answer_level` (`type`, `family`, `manufacturer`, `none`), `answer_text`,
            `aircraft_probability` (-1.0 without a localizer), `box` ([left, top, right, bottom]
            or four -1 without a crop), and `manufacturer` "" for level `none`; `answer_source`
            (`image` or `registration`), `registration`, `registration_icao_type` ("" when none
            was read), `registration_agrees`, `registration_box` (four -1 when none). A top-level
            `"registration": true` (or `?registration=1`) asks for the registration reading
          content:
            application/json:
              schema: {$ref: "#/components/schemas/TfPredictResponse"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "404": {$ref: "#/components/responses/NotFound"}
        "413": {$ref: "#/components/responses/TooLarge"}
        "415": {$ref: "#/components/responses/UnsupportedMediaType"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    _check_name(name)
    if (request.mimetype or "").lower() != "application/json":
        raise APIError(415, "unsupported_media_type", "send application/json")
    try:
        doc = json.loads(request.get_data() or b"null")
    except (ValueError, RecursionError):
        raise APIError(400, "bad_json", "request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise APIError(400, "bad_json", 'expected {"instances": [...]} or {"inputs": ...}')
    sig = doc.get("signature_name", "serving_default")
    if sig != "serving_default":
        raise APIError(400, "bad_request", f"unknown signature_name {sig!r}; use serving_default")
    if ("instances" in doc) == ("inputs" in doc):
        raise APIError(400, "bad_json", 'give exactly one of "instances" (row) and "inputs" (columnar)')
    if "instances" in doc:
        items, row = doc["instances"], True
    else:
        items, row = doc["inputs"], False
        if isinstance(items, dict) and len(items) == 1 and "b64" not in items:
            items = next(iter(items.values()))
    if not isinstance(items, list) or not items:
        raise APIError(400, "bad_json", "instances/inputs must be a non-empty list of {\"b64\": ...}")
    images = [(f"{'instances' if row else 'inputs'}[{i}]", _b64_item(it, f"[{i}]")) for i, it in enumerate(items)]
    read = inference.wants_registration(doc.get("registration"), "registration")
    result = inference.run(images, current_app.config["TOP_K"], read=read)
    rows = [inference.flat_outputs(p) for p in result.predictions]
    if row:
        return jsonify(predictions=rows, model_version=result.model_version)
    return jsonify(outputs={k: [r[k] for r in rows] for k in rows[0]}, model_version=result.model_version)
