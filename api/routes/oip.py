"""Open Inference Protocol v2 (KServe v2 / Triton / MLServer REST): health, model metadata and
readiness, and inference with a ``BYTES`` input of encoded images.

The one model is named ``MODEL_NAME`` (default ``planespotter``); its version is the model
version folder's name. Inference takes one input (any name; ``image`` is advertised) of datatype
``BYTES`` and shape ``[n]`` whose elements are encoded JPEG/PNG/WebP images:

- JSON: each element a base64 string (JSON cannot hold raw bytes);
- the binary tensor data extension: the JSON header is the first ``Inference-Header-Content-Length``
  bytes of the body, the input's ``parameters.binary_data_size`` bytes follow, each element as a
  4-byte little-endian length and the raw bytes (Triton's BYTES serialisation).

Outputs (shape ``[n]`` each, ``box`` ``[n, 4]``): ``manufacturer`` (BYTES; ``""`` for answer level
``none``), ``manufacturer_probability`` (FP64; 0.0 for level ``none``),
``family`` (BYTES; ``""`` when the manufacturer has no stage-2 model), ``family_probability`` (FP64;
P(family | manufacturer)), ``type`` (BYTES; ``""`` unless the answer names a type),
``type_probability`` (FP64; P(type | manufacturer)), ``answer`` (BYTES: "B77W", "B777 family",
"Boeing", "Other" or "none"), ``joint_probability`` (FP64; P(manufacturer) x P(answer |
manufacturer); 0.0 for level ``none``), ``unsure`` (BOOL), ``unsure_reasons`` (BYTES: why, the
codes ``low_confidence``, ``unusual_photo``, ``views_disagree``, ``types_close`` joined by ``,``;
``""`` when sure), ``answer_level`` (BYTES: ``type``,
``family``, ``manufacturer`` or ``none``), ``answer_text`` (BYTES: the answer in words, "Boeing
B77W", "another manufacturer (not Airbus or Boeing)", "not an aircraft"),
``aircraft_probability`` (FP64: the localizer's aircraft probability in [0, 1]; -1.0 when the
version has no localizer), ``box`` (INT32 ``[n, 4]``, row-major: left, top, right, bottom of the
crop the answer came from, in the uploaded image's pixels after EXIF rotation; four -1 when the
answer came from the whole image), ``answer_source`` (BYTES: ``image``, or ``registration`` when
the type came from the registration painted on the aircraft), ``registration`` and
``registration_icao_type`` (BYTES; ``""`` when none was read), ``registration_agrees`` (BOOL),
``registration_box`` (INT32 ``[n, 4]``; four -1 when none); see :func:`api.inference.flat_outputs`.
A request's ``outputs`` list selects some of them. The request's ``parameters``
``{"registration": true}`` asks for the registration reading (as ``?registration=1`` does). Health answers are 200 for true and 503 for false (the protocol
reads any non-200 code as false).
"""

from __future__ import annotations

import importlib.metadata
import json
import struct

from flask import Blueprint, current_app, jsonify, request

from .. import inference
from ..errors import APIError

bp = Blueprint("oip", __name__, url_prefix="/v2")

OUTPUTS = [("manufacturer", "BYTES"), ("manufacturer_probability", "FP64"), ("family", "BYTES"),
           ("family_probability", "FP64"), ("type", "BYTES"), ("type_probability", "FP64"),
           ("answer", "BYTES"), ("joint_probability", "FP64"), ("unsure", "BOOL"),
           ("unsure_reasons", "BYTES"), ("answer_level", "BYTES"),
           ("answer_text", "BYTES"), ("aircraft_probability", "FP64"), ("box", "INT32"),
           ("answer_source", "BYTES"), ("registration", "BYTES"), ("registration_icao_type", "BYTES"),
           ("registration_agrees", "BOOL"), ("registration_box", "INT32")]
#: Trailing dimensions of outputs that are not one scalar per image.
OUTPUT_DIMS = {"box": [4], "registration_box": [4]}

#: OpenAPI components of this module's operations (collected by :func:`api.spec.build_spec`).
SCHEMAS: dict[str, dict] = {
    "OipReady": {
        "type": "object", "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}, "name": {"type": "string"}},
    },
    "OipTensorMetadata": {
        "type": "object", "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                       "shape": {"type": "array", "items": {"type": "integer"}}},
    },
    "OipModelMetadata": {
        "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"},
                       "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/OipTensorMetadata"}},
                       "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/OipTensorMetadata"}}},
    },
    "OipInferRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "registration": {"type": "boolean", "description": "also read the registration"}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {"name": {"type": "string", "example": "image"},
                               "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                               "datatype": {"type": "string", "enum": ["BYTES"]},
                               "parameters": {"type": "object"},
                               "data": {"type": "array", "items": {"type": "string", "format": "byte"}}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                   "properties": {"name": {"type": "string"}}}},
        },
    },
    "OipInferResponse": {
        "type": "object", "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "datatype", "shape", "data"],
                "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                               "shape": {"type": "array", "items": {"type": "integer"}},
                               "data": {"type": "array", "items": {}}}}}},
    },
}


def _version() -> str:
    try:
        return importlib.metadata.version("planespotter")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _check_name(name: str):
    engine = current_app.extensions["engine"]
    if name != current_app.config["MODEL_NAME"]:
        raise APIError(404, "model_not_found", f"no model named {name!r} (this server serves "
                                               f"{current_app.config['MODEL_NAME']!r})")
    return engine


@bp.get("")
def server_metadata():
    """OIP v2 server metadata.
    ---
    get:
      tags: [oip-v2]
      summary: Server metadata
      responses:
        "200":
          description: name, version and protocol extensions of the server
          content:
            application/json:
              schema:
                type: object
                required: [name, version, extensions]
                properties:
                  name: {type: string}
                  version: {type: string}
                  extensions: {type: array, items: {type: string}}
    """
    return jsonify(name="planespotter", version=_version(), extensions=["binary_tensor_data"])


@bp.get("/health/live")
def live():
    """OIP v2 liveness.
    ---
    get:
      tags: [oip-v2]
      summary: Server live
      responses:
        "200":
          description: live
          content:
            application/json:
              schema:
                type: object
                required: [live]
                properties:
                  live: {type: boolean}
    """
    return jsonify(live=True)


def _ready_response(body: dict, ready: bool, reason: str):
    resp = jsonify(**body) if ready else jsonify(error="not_ready", message=reason, **body)
    resp.status_code = 200 if ready else 503
    return resp


@bp.get("/health/ready")
def ready():
    """OIP v2 readiness.
    ---
    get:
      tags: [oip-v2]
      summary: Server ready (all models loaded and warm)
      responses:
        "200":
          description: ready
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipReady"}
        "503":
          description: not ready
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipReady"}
    """
    engine = current_app.extensions["engine"]
    return _ready_response({"ready": engine.ready}, engine.ready, engine.reason)


@bp.get("/models/<name>")
def model_metadata(name):
    """OIP v2 model metadata.
    ---
    get:
      tags: [oip-v2]
      summary: Model metadata (inputs, outputs, versions)
      parameters:
        - model_name
      responses:
        "200":
          description: model metadata
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipModelMetadata"}
        "404": {$ref: "#/components/responses/NotFound"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    engine = _check_name(name)
    if not engine.ready:
        raise APIError(503, "not_ready", engine.reason)
    return jsonify(
        name=name,
        versions=[engine.cascade.version],
        platform="keras",
        inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        outputs=[{"name": n, "datatype": d, "shape": [-1, *OUTPUT_DIMS.get(n, [])]} for n, d in OUTPUTS],
    )


@bp.get("/models/<name>/ready")
def model_ready(name):
    """OIP v2 model readiness.
    ---
    get:
      tags: [oip-v2]
      summary: Model ready
      parameters:
        - model_name
      responses:
        "200":
          description: ready
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipReady"}
        "404": {$ref: "#/components/responses/NotFound"}
        "503":
          description: not ready
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipReady"}
    """
    engine = _check_name(name)
    return _ready_response({"name": name, "ready": engine.ready}, engine.ready, engine.reason)


def _split_binary(body: bytes) -> tuple[dict, bytes]:
    """(JSON header, binary tail) of a binary-extension request; else (JSON, b"")."""
    header_len = request.headers.get("Inference-Header-Content-Length")
    if header_len is None:
        raw, tail = body, b""
    else:
        if not header_len.isdigit() or int(header_len) > len(body):
            raise APIError(400, "bad_request", "Inference-Header-Content-Length is not a valid length")
        raw, tail = body[: int(header_len)], body[int(header_len):]
    try:
        doc = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise APIError(400, "bad_json", "the inference request is not valid JSON") from None
    if not isinstance(doc, dict):
        raise APIError(400, "bad_json", "the inference request must be a JSON object")
    return doc, tail


def _unpack_bytes(blob: bytes) -> list[bytes]:
    """Triton's BYTES serialisation: repeated (uint32 little-endian length, bytes)."""
    out, i = [], 0
    while i < len(blob):
        if i + 4 > len(blob):
            raise APIError(400, "bad_binary_data", "BYTES element length is cut off")
        (n,) = struct.unpack_from("<I", blob, i)
        i += 4
        if i + n > len(blob):
            raise APIError(400, "bad_binary_data", "BYTES element is shorter than its length")
        out.append(blob[i: i + n])
        i += n
    return out


def _flatten(data) -> list:
    """Row-major elements of a (possibly nested) JSON list, iteratively (no recursion limit)."""
    out, stack = [], [iter([data])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def images_from_infer_request(doc: dict, tail: bytes) -> list[tuple[str, bytes]]:
    """The encoded images of an OIP v2 inference request (see the module docstring).

    Raises:
        APIError: 400 with ``bad_request``/``bad_datatype``/``bad_shape``/``bad_base64``/
            ``bad_binary_data``.
    """
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise APIError(400, "bad_request", "expected exactly one input: a BYTES tensor of encoded images")
    inp = inputs[0]
    name = inp.get("name") if isinstance(inp.get("name"), str) else "image"
    if inp.get("datatype") != "BYTES":
        raise APIError(400, "bad_datatype", f"input {name!r} must have datatype BYTES (encoded images)")
    shape = inp.get("shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise APIError(400, "bad_shape", "input shape must be a non-empty list of non-negative integers")
    params = inp.get("parameters") if isinstance(inp.get("parameters"), dict) else {}
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(tail):
            raise APIError(400, "bad_binary_data", "binary_data_size does not match the binary body")
        elements = _unpack_bytes(tail[:size])
    else:
        if "data" not in inp:
            raise APIError(400, "bad_request", f"input {name!r} has no data")
        elements = [inference.b64decode(e, f"{name} element {i}") for i, e in enumerate(_flatten(inp["data"]))]
    count = 1
    for s in shape:
        count *= s
    if count != len(elements):
        raise APIError(400, "bad_shape", f"shape {shape} holds {count} elements, the data {len(elements)}")
    return [(f"{name}[{i}]", e) for i, e in enumerate(elements)]


@bp.post("/models/<name>/infer")
def infer(name):
    """OIP v2 inference on encoded images.
    ---
    post:
      tags: [oip-v2]
      summary: Classify a BYTES tensor of encoded images
      description: |
        One input of datatype `BYTES`, shape `[n]`: JSON elements are base64-encoded JPEG/PNG/WebP
        files. The binary tensor data extension is also accepted (header
        `Inference-Header-Content-Length`, input `parameters.binary_data_size`, elements as 4-byte
        little-endian length + bytes).
      parameters:
        - model_name
        - registration
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/OipInferRequest"}
          application/octet-stream:
            schema: {type: string, format: binary}
      responses:
        "200":
          description: |
            outputs, each of shape [n] (`box`: [n, 4], row-major). `answer_level` is `type`,
            `family`, `manufacturer` (also for `Other`, another manufacturer) or `none` (not an
            aircraft: `manufacturer` is "", probabilities 0.0); `answer_text` says it in words;
            `aircraft_probability` is -1.0 when the version has no localizer; `box` is four -1
            when the answer came from the whole image
          content:
            application/json:
              schema: {$ref: "#/components/schemas/OipInferResponse"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "404": {$ref: "#/components/responses/NotFound"}
        "413": {$ref: "#/components/responses/TooLarge"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    _check_name(name)
    doc, tail = _split_binary(request.get_data())
    images = images_from_infer_request(doc, tail)
    wanted = [n for n, _ in OUTPUTS]
    if isinstance(doc.get("outputs"), list):
        asked = [o.get("name") for o in doc["outputs"] if isinstance(o, dict)]
        unknown = [a for a in asked if a not in wanted]
        if unknown:
            raise APIError(400, "bad_request", f"unknown outputs {unknown}; known: {wanted}")
        wanted = [n for n in wanted if n in asked] or wanted
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    read = inference.wants_registration(params.get("registration"), "parameters.registration")
    result = inference.run(images, current_app.config["TOP_K"], read=read)
    rows = [inference.flat_outputs(p) for p in result.predictions]
    body = {"model_name": name, "model_version": result.model_version}
    if isinstance(doc.get("id"), str):
        body["id"] = doc["id"]
    datatypes = dict(OUTPUTS)
    body["outputs"] = [{"name": n, "datatype": datatypes[n], "shape": [len(rows), *OUTPUT_DIMS.get(n, [])],
                        "data": [v for r in rows for v in (r[n] if n in OUTPUT_DIMS else [r[n]])]}
                       for n in wanted]
    return jsonify(body)
