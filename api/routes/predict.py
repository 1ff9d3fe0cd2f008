"""Classification routes (native and R plumber compatible).

- ``POST /predict``: a multipart ``image`` field (one or several), a raw ``image/jpeg``,
  ``image/png`` or ``image/webp`` body, or JSON ``{"instances": [{"b64": "..."}]}`` (TF Serving's
  binary convention); ``?top_k=N``.
- ``GET /predict?path=<relative path>``: an image under the configured ``IMAGE_ROOT``.
- ``GET /predict?url=<http(s) URL>``: fetch and classify (off by default; see :mod:`api.fetch`).
- ``GET /names``: the R original's plumber route — classifies ``DEFAULT_IMAGE`` (else the model
  version's own reference image) and answers the manufacturer as plumber's default JSON
  serializer does (a boxed array, ``["Boeing"]``; ``["Other"]`` for another manufacturer,
  ``["none"]`` when the version's localizer finds no aircraft).

The view docstrings hold the OpenAPI operations (YAML after ``---``, read by apispec);
:data:`SCHEMAS` and :data:`PARAMETERS` the components they name (:mod:`api.spec`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from model import io as mio
from model.confidence import REASON_TEXT, REASONS

from .. import fetch, inference
from ..errors import APIError
from ..spec import PROB, PROB_OR_NULL, STR_OR_NULL

bp = Blueprint("predict", __name__)

RAW_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}

def _level_result(description: str, example: str) -> dict:
    """The OpenAPI schema of a family or type result: label, P(label | manufacturer), joint."""
    return {"type": "object", "required": ["label", "probability", "joint_probability"],
            "description": description,
            "properties": {"label": {**STR_OR_NULL, "example": example}, "probability": PROB_OR_NULL,
                           "joint_probability": PROB_OR_NULL}}


#: The answer's fields of one image, as a prediction lists them and as the native answer repeats
#: them at top level for a single image (:data:`api.inference.TOP_LEVEL_KEYS`, but ``unsure``).
ANSWER_FIELDS = {name: {"$ref": f"#/components/schemas/{schema}"} for name, schema in (
    ("manufacturer", "ManufacturerResult"), ("family", "FamilyResult"), ("type", "TypeResult"),
    ("answer", "Answer"), ("aircraft", "Aircraft"), ("box", "Box"), ("registration", "Registration"))}


#: ``unsure_reasons`` of the native answer: why it is unsure (empty when sure).
UNSURE_REASONS = {"type": "array", "items": {"$ref": "#/components/schemas/UnsureReason"},
                  "example": ["unusual_photo"], "description": "why the answer is unsure; [] when sure"}

#: OpenAPI components of this module's operations (collected by :func:`api.spec.build_spec`).
SCHEMAS: dict[str, dict] = {
    "UnsureReason": {"type": "string", "enum": list(REASONS),
                     "description": "; ".join(f"`{k}`: {v}" for k, v in REASON_TEXT.items())},
    "ManufacturerResult": {
        "type": "object", "required": ["label", "probability"],
        "description": "stage 1: `Airbus`, `Boeing` or (versions trained with a third class) `Other`, "
                       "another manufacturer; both null when the answer level is `none` (not an aircraft)",
        "properties": {"label": {**STR_OR_NULL, "example": "Boeing"}, "probability": PROB_OR_NULL},
    },
    "FamilyResult": _level_result(
        "aircraft family (A320 = A318-A321, B737 incl. the MAX, ...); `probability` is "
        "P(family | manufacturer), the sum of its stage-2 leaves; null when the "
        "manufacturer has no stage-2 model", "B737"),
    "TypeResult": _level_result(
        "ICAO type designator, named only when it is a trained type whose "
        "P(type | manufacturer) reaches the type threshold (else null: the answer "
        "stops at the family); `joint_probability` P(manufacturer) x P(type | manufacturer)", "B738"),
    "Answer": {
        "type": "object", "required": ["level", "label", "text", "source"],
        "description": "the answer at the level the model knows. `type`: a named ICAO type (label "
                       "`B77W`); `family`: the type is not sure enough (label `B777 family`); "
                       "`manufacturer`: no stage-2 model for it, in particular `Other`, another "
                       "manufacturer than Airbus and Boeing (label `Boeing` or `Other`); `none`: "
                       "the version's localizer finds no aircraft (label `none`; manufacturer, "
                       "family and type are null)",
        "properties": {"level": {"type": "string", "enum": ["type", "family", "manufacturer", "none"]},
                       "label": {"type": "string", "example": "B777 family"},
                       "text": {"type": "string", "example": "Boeing B777 family",
                                "description": 'the answer in words: "Boeing B77W", "Boeing B777 family", '
                                               '"Airbus", "another manufacturer (not Airbus or Boeing)" '
                                               'or "not an aircraft"'},
                       "source": {"type": "string", "enum": ["image", "registration"],
                                  "description": "`registration`: the type is the registry's for the "
                                                 "registration painted on the aircraft (asked with "
                                                 "`?registration=1`); `image`: the classifier's"}},
    },
    "Registration": {
        "type": "object", "nullable": True, "required": ["text", "icao_type", "description", "box", "agrees"],
        "description": "the registration read on the aircraft and found in the registry (asked with "
                       "`?registration=1`); null when not asked, when the server has no registry "
                       "(`/metadata`), or when no text on the image is a registration the registry knows",
        "properties": {
            "text": {"type": "string", "example": "D-ABYI", "description": "as the registry writes it"},
            "icao_type": {"type": "string", "example": "B748", "description": "the registry's ICAO type designator"},
            "description": {"type": "string", "example": "BOEING 747-8"},
            "box": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "integer", "minimum": 0},
                    "description": "the text's `[left, top, right, bottom]` in the uploaded image's pixels"},
            "agrees": {"type": "boolean", "description": "the registry's manufacturer is the answer's; false: "
                                                          "a sure image answer disagrees (a re-used "
                                                          "registration or a misread), and the answer is the image's"}},
    },
    "Aircraft": {
        "type": "object", "required": ["probability", "threshold"],
        "description": "the localizer's aircraft gate: `probability` (the ImageNet aircraft classes' summed "
                       "probability on the whole image) below `threshold` answers level `none`; both "
                       "null for a version without a localizer",
        "properties": {"probability": PROB_OR_NULL, "threshold": PROB_OR_NULL},
    },
    "Box": {
        "type": "array", "nullable": True, "minItems": 4, "maxItems": 4,
        "items": {"type": "integer", "minimum": 0},
        "example": [120, 64, 980, 512],
        "description": "the crop the answer came from, `[left, top, right, bottom]` (right/bottom "
                       "exclusive) in the uploaded image's pixels after EXIF rotation; null when the "
                       "classifier saw the whole image (no crop rule, or no localizer)",
    },
    "Branch": {
        "type": "object",
        "required": ["manufacturer", "manufacturer_probability", "family", "family_probability", "type",
                     "type_probability", "joint_probability"],
        "properties": {"manufacturer": {"type": "string"}, "manufacturer_probability": PROB,
                       "family": STR_OR_NULL, "family_probability": PROB_OR_NULL,
                       "type": STR_OR_NULL, "type_probability": PROB_OR_NULL,
                       "joint_probability": {**PROB, "description": "P(manufacturer) x P(answer | manufacturer)"}},
    },
    "TopK": {
        "type": "object", "required": ["manufacturer", "family", "type", "probability"],
        "properties": {"manufacturer": {"type": "string"}, "family": STR_OR_NULL,
                       "type": {**STR_OR_NULL, "description": "null for a whole-family leaf"},
                       "probability": {**PROB, "description": "joint probability"}},
    },
    "Prediction": {
        "type": "object", "required": ["file", "manufacturer", "family", "type", "answer", "aircraft", "box",
                                       "unsure", "unsure_reasons", "branches", "top_k", "registration"],
        "properties": {
            "file": {"type": "string", "description": "the image's name in the request"},
            **ANSWER_FIELDS,
            "unsure": {"type": "boolean", "description": "top manufacturer probability under the routing "
                                                         "threshold, an unusual photo, or views that "
                                                         "disagree: both leading branches are given "
                                                         "(false for level `none`)"},
            "unsure_reasons": UNSURE_REASONS,
            "branches": {"type": "array", "items": {"$ref": "#/components/schemas/Branch"}},
            "top_k": {"type": "array", "items": {"$ref": "#/components/schemas/TopK"}},
        },
    },
    "PredictResponse": {
        "type": "object", "required": ["model_version", "predictions", "timing_ms"],
        "properties": {
            "model_version": {"type": "string"},
            **ANSWER_FIELDS,
            "unsure": {"type": "boolean"},
            "unsure_reasons": UNSURE_REASONS,
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
            "timing_ms": {"type": "object", "required": ["decode", "inference"],
                          "properties": {"decode": {"type": "number"}, "inference": {"type": "number"}}},
        },
    },
    "B64Instances": {
        "type": "object", "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["b64"],
            "properties": {"b64": {"type": "string", "format": "byte", "description": "base64 JPEG/PNG/WebP"}}}},
            "registration": {"type": "boolean", "description": "also read the registration (instead of "
                                                               "`?registration=`)"}},
    },
}

PARAMETERS = {
    "top_k": {"name": "top_k", "in": "query", "description": "number of (manufacturer, type) pairs listed",
              "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 3}},
    "registration": {"name": "registration", "in": "query",
                     "description": "1: also read the registration painted on the aircraft and look it up "
                                    "in the registry (slower; null without a registry). A JSON body's "
                                    "`registration` field, when given, decides instead",
                     "schema": {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no", "on", "off"],
                                "default": "0"}},
}


def _top_k() -> int:
    raw = request.args.get("top_k", str(current_app.config["TOP_K"]))
    try:
        k = int(raw)
    except ValueError:
        raise APIError(400, "bad_parameter", f"top_k must be an integer, got {raw!r}") from None
    if not 1 <= k <= 50:
        raise APIError(400, "bad_parameter", "top_k must be between 1 and 50")
    return k


def _json_body():
    try:
        return json.loads(request.get_data() or b"null")
    except (ValueError, RecursionError):
        raise APIError(400, "bad_json", "request body is not valid JSON") from None


def _images_from_request() -> tuple[list[tuple[str, bytes]], bool]:
    """(name, encoded bytes) of every image in a POST body, and whether the registration is asked
    for (a JSON body's ``registration`` field, else ``?registration=``); raises APIError 400/415."""
    ctype = (request.mimetype or "").lower()
    if ctype == "multipart/form-data":
        files = request.files.getlist("image")
        if not files:
            raise APIError(400, "missing_field", "multipart body has no 'image' file field")
        return [(f.filename or f"image{i}", f.read()) for i, f in enumerate(files)], inference.wants_registration()
    if ctype in RAW_IMAGE_TYPES:
        return [("body", request.get_data())], inference.wants_registration()
    if ctype == "application/json":
        doc = _json_body()
        instances = doc.get("instances") if isinstance(doc, dict) else None
        if not isinstance(instances, list) or not instances:
            raise APIError(400, "bad_json", 'expected {"instances": [{"b64": "<base64 image>"}, ...]}')
        out = []
        for i, inst in enumerate(instances):
            b64 = inst.get("b64") if isinstance(inst, dict) else None
            if not isinstance(b64, str):
                raise APIError(400, "bad_json", f"instances[{i}] has no 'b64' string")
            out.append((f"instances[{i}]", inference.b64decode(b64, f"instances[{i}].b64")))
        return out, inference.wants_registration(doc.get("registration"))
    raise APIError(415, "unsupported_media_type",
                   "send multipart/form-data with an 'image' field, a raw image/jpeg|png|webp body, "
                   'or application/json {"instances": [{"b64": ...}]}')


def classify(images: list[tuple[str, bytes]], top_k: int, read: bool = False) -> dict:
    """Decode, classify (reading registrations when ``read``) and wrap results with model version
    and timing (the native answer)."""
    return inference.native_body(inference.run(images, top_k, read=read))


@bp.post("/predict")
def predict_post():
    """Classify the image(s) in the body.
    ---
    post:
      tags: [native]
      summary: Classify one or several images
      description: |
        Stage 1 gives the manufacturer; stage 2 that manufacturer's family and ICAO type. When the
        top manufacturer probability is under the routing threshold the answer is `unsure` and the
        two leading branches are both evaluated. `answer.level` is `type`, `family`,
        `manufacturer` (also for `Other`, a manufacturer that is neither Airbus nor Boeing: no
        family, no type) or `none` (the version's localizer finds no aircraft: manufacturer,
        family and type are null); `answer.text` says it in words ("Boeing B77W", "another
        manufacturer (not Airbus or Boeing)", "not an aircraft"). `aircraft` is the localizer's
        aircraft probability and gate threshold (null without a localizer); `box` the crop
        `[left, top, right, bottom]` the answer came from, in the uploaded image's pixels after
        EXIF rotation, or null (the whole image). One image: `manufacturer`, `family`, `type`,
        `answer`, `aircraft`, `box` and `unsure` are also given at top level. Formats: JPEG, PNG,
        WebP.
      parameters:
        - top_k
        - registration
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema:
              type: object
              required: [image]
              properties:
                image:
                  type: array
                  items: {type: string, format: binary}
                  description: one or several image files
          image/jpeg:
            schema: {type: string, format: binary}
          image/png:
            schema: {type: string, format: binary}
          image/webp:
            schema: {type: string, format: binary}
          application/json:
            schema: {$ref: "#/components/schemas/B64Instances"}
      responses:
        "200":
          description: one prediction per image
          content:
            application/json:
              schema: {$ref: "#/components/schemas/PredictResponse"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "413": {$ref: "#/components/responses/TooLarge"}
        "415": {$ref: "#/components/responses/UnsupportedMediaType"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    top_k = _top_k()
    images, read = _images_from_request()
    return jsonify(classify(images, top_k, read=read))


def resolve_under_root(rel: str) -> Path:
    """The file ``rel`` under ``IMAGE_ROOT``; 400 for absolute paths, 403 for escapes, 404 if absent."""
    if not rel:
        raise APIError(400, "missing_parameter", "give ?path=<image path relative to the image root>")
    if rel.startswith(("/", "\\")) or "\x00" in rel or (len(rel) > 1 and rel[1] == ":"):
        raise APIError(400, "bad_path", "path must be relative to the image root")
    root = Path(current_app.config["IMAGE_ROOT"]).resolve()
    try:
        target = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError):
        raise APIError(400, "bad_path", "path cannot be resolved") from None
    if target != root and root not in target.parents:
        raise APIError(403, "forbidden_path", "path escapes the image root")
    if not target.is_file():
        raise APIError(404, "not_found", f"no image at {rel!r} under the image root")
    return target


@bp.get("/predict")
def predict_get():
    """Classify an image under the image root (``?path=``) or fetched from a URL (``?url=``).
    ---
    get:
      tags: [native, plumber]
      summary: Classify an image on the server (path) or on the web (url)
      description: |
        `path`: an image file relative to the configured image root (the R original's
        `GET /predict?path=`); absolute paths are refused (400), paths that escape the root (`..`,
        symlinks) too (403).
        `url`: fetch an http(s) image and classify it. Off by default (403 `url_fetch_disabled`);
        when on, only allow-listed hosts, no redirects to other hosts, no loopback, private or
        link-local addresses after DNS resolution, and size and time limits.
        Give exactly one of `path` and `url`.
      parameters:
        - name: path
          in: query
          schema: {type: string}
          description: image path relative to the image root
        - name: url
          in: query
          schema: {type: string}
          description: http(s) URL of an image (when URL fetching is enabled)
        - top_k
        - registration
      responses:
        "200":
          description: the prediction
          content:
            application/json:
              schema: {$ref: "#/components/schemas/PredictResponse"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
        "413": {$ref: "#/components/responses/TooLarge"}
        "502": {$ref: "#/components/responses/BadGateway"}
        "503": {$ref: "#/components/responses/NotReady"}
        "504": {$ref: "#/components/responses/GatewayTimeout"}
    """
    top_k = _top_k()
    read = inference.wants_registration()
    url = request.args.get("url")
    rel = request.args.get("path")
    if url is not None and rel is not None:
        raise APIError(400, "bad_parameter", "give either ?path= or ?url=, not both")
    if url is not None:
        if not current_app.config["URL_FETCH"]:
            raise APIError(403, "url_fetch_disabled",
                           "fetching images by URL is disabled on this server (PLANESPOTTER_URL_FETCH)")
        data = fetch.fetch(url, fetch.URLPolicy.from_config(current_app.config))
        return jsonify(classify([(url, data)], top_k, read=read))
    target = resolve_under_root(rel or "")
    return jsonify(classify([(rel, target.read_bytes())], top_k, read=read))


@functools.lru_cache(maxsize=4)
def _reference_image(version_path: str) -> bytes:
    """The reference image of the loaded model version (cached per version folder)."""
    return mio.reference_image_bytes(version_path)


@bp.get("/names")
def names():
    """The R original's route: the manufacturer of the default image as a boxed JSON array.
    ---
    get:
      tags: [plumber]
      summary: Manufacturer of the default image (R plumber original)
      description: |
        Classifies the configured default image (`PLANESPOTTER_DEFAULT_IMAGE`, relative to the
        image root) or, when none is configured, the model version's own reference image
        (`reference.png` in the version folder, the image whose tensor checksum
        `preprocessing.json` stores), and answers as plumber's default JSON serializer does: a
        boxed array holding the manufacturer, e.g. `["Boeing"]`, with
        `Content-Type: application/json`. Always one string: `"Airbus"` or `"Boeing"`,
        `"Other"` for another manufacturer (answer level `manufacturer`), `"none"` when the
        version's localizer finds no aircraft in the image (answer level `none`).
      responses:
        "200":
          description: boxed manufacturer name
          content:
            application/json:
              schema:
                type: array
                minItems: 1
                maxItems: 1
                items: {type: string, example: Boeing,
                        description: 'the manufacturer label, "Other", or "none" (not an aircraft)'}
              example: ["Boeing"]
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
        "503": {$ref: "#/components/responses/NotReady"}
    """
    rel = current_app.config["DEFAULT_IMAGE"]
    if rel:
        image = (rel, resolve_under_root(rel).read_bytes())
    else:
        try:
            image = (mio.REFERENCE_IMAGE, _reference_image(inference.engine().cascade.info["path"]))
        except mio.ModelLoadError as e:
            raise APIError(500, "bad_reference_image", str(e)) from None
    body = classify([image], 1)
    label = "none" if body["answer"]["level"] == "none" else body["manufacturer"]["label"]
    return Response(json.dumps([label]), mimetype="application/json")
