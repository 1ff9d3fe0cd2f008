"""Classification routes.

- ``POST /predict``: a multipart ``image`` field (one or several), a raw ``image/jpeg``,
  ``image/png`` or ``image/webp`` body, or JSON ``{"instances": [{"b64": "..."}]}`` (TF Serving's
  binary convention); ``?top_k=N``.
- ``GET /predict?path=<relative path>``: an image under the configured ``IMAGE_ROOT``.
- ``GET /names``: the R original's plumber route — classifies ``DEFAULT_IMAGE`` and answers the
  manufacturer as plumber's default JSON serializer does (a boxed array, ``["Boeing"]``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from pathlib import Path

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from model import preprocessing as pp

from ..engine import NotReady
from ..errors import APIError

bp = Blueprint("predict", __name__)

RAW_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}


def _engine():
    engine = current_app.extensions["engine"]
    if not engine.ready:
        raise APIError(503, "not_ready", engine.reason)
    return engine


def _top_k() -> int:
    raw = request.args.get("top_k", str(current_app.config["TOP_K"]))
    try:
        k = int(raw)
    except ValueError:
        raise APIError(400, "bad_parameter", f"top_k must be an integer, got {raw!r}") from None
    if not 1 <= k <= 50:
        raise APIError(400, "bad_parameter", "top_k must be between 1 and 50")
    return k


def _images_from_request() -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of every image in a POST body; raises APIError 400/415."""
    ctype = (request.mimetype or "").lower()
    if ctype == "multipart/form-data":
        files = request.files.getlist("image")
        if not files:
            raise APIError(400, "missing_field", "multipart body has no 'image' file field")
        return [(f.filename or f"image{i}", f.read()) for i, f in enumerate(files)]
    if ctype in RAW_IMAGE_TYPES:
        return [("body", request.get_data())]
    if ctype == "application/json":
        try:
            doc = json.loads(request.get_data() or b"null")
        except ValueError:
            raise APIError(400, "bad_json", "request body is not valid JSON") from None
        instances = doc.get("instances") if isinstance(doc, dict) else None
        if not isinstance(instances, list) or not instances:
            raise APIError(400, "bad_json", 'expected {"instances": [{"b64": "<base64 image>"}, ...]}')
        out = []
        for i, inst in enumerate(instances):
            b64 = inst.get("b64") if isinstance(inst, dict) else None
            if not isinstance(b64, str):
                raise APIError(400, "bad_json", f"instances[{i}] has no 'b64' string")
            try:
                out.append((f"instances[{i}]", base64.b64decode(b64, validate=True)))
            except (binascii.Error, ValueError):
                raise APIError(400, "bad_base64", f"instances[{i}].b64 is not valid base64") from None
        return out
    raise APIError(415, "unsupported_media_type",
                   "send multipart/form-data with an 'image' field, a raw image/jpeg|png|webp body, "
                   'or application/json {"instances": [{"b64": ...}]}')


def decode_all(images: list[tuple[str, bytes]], spec: pp.PreprocessingSpec) -> np.ndarray:
    """Preprocess every image; a bad one aborts the request with 400 (413 when too large)."""
    arrays = []
    for name, data in images:
        try:
            arrays.append(pp.to_array(data, spec))
        except pp.ImageDecodeError as e:
            status = 413 if e.code == "too_large" else 400
            raise APIError(status, f"{e.code}_image", f"{name}: {e}") from None
    return np.stack(arrays)


def classify(images: list[tuple[str, bytes]], top_k: int) -> dict:
    """Decode, classify and wrap results with model version and timing."""
    engine = _engine()
    limit = current_app.config["MAX_IMAGES_PER_REQUEST"]
    if len(images) > limit:
        raise APIError(413, "too_many_images", f"at most {limit} images per request")
    t0 = time.perf_counter()
    x = decode_all(images, engine.spec)
    t1 = time.perf_counter()
    try:
        results = engine.predict(x, top_k=top_k)
    except NotReady as e:
        raise APIError(503, "not_ready", str(e)) from None
    t2 = time.perf_counter()
    predictions = [{"file": name, **res} for (name, _), res in zip(images, results)]
    body = {"model_version": engine.cascade.version}
    if len(predictions) == 1:
        body.update({k: predictions[0][k] for k in ("manufacturer", "type", "unsure")})
    body["predictions"] = predictions
    body["timing_ms"] = {"decode": round((t1 - t0) * 1000, 2), "inference": round((t2 - t1) * 1000, 2)}
    return body


@bp.post("/predict")
def predict_post():
    """Classify the image(s) in the body."""
    top_k = _top_k()
    return jsonify(classify(_images_from_request(), top_k))


def resolve_under_root(rel: str) -> Path:
    """The file ``rel`` under ``IMAGE_ROOT``; 400 for absolute paths, 403 for escapes, 404 if absent."""
    if not rel:
        raise APIError(400, "missing_parameter", "give ?path=<image path relative to the image root>")
    if rel.startswith(("/", "\\")) or "\x00" in rel:
        raise APIError(400, "bad_path", "path must be relative to the image root")
    root = Path(current_app.config["IMAGE_ROOT"]).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise APIError(403, "forbidden_path", "path escapes the image root")
    if not target.is_file():
        raise APIError(404, "not_found", f"no image at {rel!r} under the image root")
    return target


@bp.get("/predict")
def predict_get():
    """Classify an image under the configured image root (``?path=``)."""
    top_k = _top_k()
    rel = request.args.get("path", "")
    target = resolve_under_root(rel)
    return jsonify(classify([(rel, target.read_bytes())], top_k))


@bp.get("/names")
def names():
    """The R original's route: the manufacturer of the default image as a boxed JSON array."""
    rel = current_app.config["DEFAULT_IMAGE"]
    if not rel:
        raise APIError(404, "no_default_image", "no default image configured (PLANESPOTTER_DEFAULT_IMAGE)")
    target = resolve_under_root(rel)
    label = classify([(rel, target.read_bytes())], 1)["manufacturer"]["label"]
    return Response(json.dumps([label]), mimetype="application/json")
