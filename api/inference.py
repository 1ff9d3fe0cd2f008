"""The serving path shared by every protocol (native, plumber, OIP v2, TF Serving): decode the
encoded images with the project's one preprocessing, classify them through the worker's
micro-batching :class:`~api.engine.Engine`, and report timing.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass

import numpy as np
from flask import Flask, current_app, g, request

from model import preprocessing as pp

from .engine import Engine, NotReady
from .errors import APIError

#: Seconds a request waits for its forward pass before answering 504 (below gunicorn's timeout).
INFERENCE_TIMEOUT_S = 60.0


#: Endpoints that classify: from the moment one starts until it submits its images, the
#: micro-batcher may wait for it (see :mod:`api.engine`).
CLASSIFY_ENDPOINTS = {"predict.predict_post", "predict.predict_get", "predict.names", "oip.infer",
                      "tfserving.predict"}


def install(app: Flask) -> None:
    """Announce every classification request to the engine when it starts (``Engine.expect``) and
    withdraw it when its images are submitted or the request ends."""

    @app.before_request
    def _expect():
        if request.endpoint in CLASSIFY_ENDPOINTS:
            eng = app.extensions["engine"]
            eng.expect()
            g._expecting = eng

    @app.teardown_request
    def _release(exc):
        release_expectation()


def release_expectation() -> None:
    """Withdraw this request's ``Engine.expect`` (once; no-op outside a classification request)."""
    eng = g.pop("_expecting", None)
    if eng is not None:
        eng.unexpect()


def engine() -> Engine:
    """The worker's engine, once ready; waits up to ``READY_WAIT_S`` while the models load.

    Raises:
        APIError: 503 ``not_ready`` (loading failed, or still loading after the wait).
    """
    eng: Engine = current_app.extensions["engine"]
    try:
        eng.ensure_ready()
    except NotReady as e:
        raise APIError(503, "not_ready", str(e)) from None
    return eng


def b64decode(text, where: str) -> bytes:
    """Strict base64 (RFC 4648 standard alphabet, padding required) of a JSON string.

    Raises:
        APIError: 400 ``bad_base64`` (not a string, or not valid base64).
    """
    if not isinstance(text, str):
        raise APIError(400, "bad_base64", f"{where} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "bad_base64", f"{where} is not valid base64") from None


def decode_all(images: list[tuple[str, bytes]], spec: pp.PreprocessingSpec) -> np.ndarray:
    """Preprocess every image (:func:`model.preprocessing.to_array`).

    Returns:
        float32 ``(n, H, W, 3)``.
    Raises:
        APIError: 413 ``too_large_image`` (over the pixel limit, decompression bomb), 400
            ``<code>_image`` for the other :class:`~model.preprocessing.ImageDecodeError` codes
            (``empty``, ``unsupported_format``, ``truncated``, ``unreadable``); the message names
            the offending image.
    """
    arrays = []
    for name, data in images:
        try:
            arrays.append(pp.to_array(data, spec))
        except pp.ImageDecodeError as e:
            status = 413 if e.code == "too_large" else 400
            raise APIError(status, f"{e.code}_image", f"{name}: {e}") from None
        except MemoryError:
            raise APIError(413, "too_large_image", f"{name}: image needs too much memory to decode") from None
    return np.stack(arrays)


@dataclass
class Result:
    """Classified images: ``predictions`` follows :meth:`model.cascade.Cascade.predict`, one dict
    per image in request order, each with ``file`` (the image's name in the request) added."""

    model_version: str
    predictions: list[dict]
    decode_ms: float
    inference_ms: float


def run(images: list[tuple[str, bytes]], top_k: int) -> Result:
    """Decode and classify ``(name, encoded bytes)`` pairs.

    Raises:
        APIError: 400 ``no_images``; 413 ``too_many_images`` (over ``MAX_IMAGES_PER_REQUEST``);
            decode errors (see :func:`decode_all`); 503 ``not_ready``; 504 ``inference_timeout``.
    """
    if not images:
        raise APIError(400, "no_images", "the request holds no image")
    limit = current_app.config["MAX_IMAGES_PER_REQUEST"]
    if len(images) > limit:
        raise APIError(413, "too_many_images", f"at most {limit} images per request, got {len(images)}")
    eng = engine()
    t0 = time.perf_counter()
    try:
        x = decode_all(images, eng.spec)
        t1 = time.perf_counter()
        futures = eng.submit(x, top_k=top_k)
        release_expectation()
        results = [f.result(timeout=INFERENCE_TIMEOUT_S) for f in futures]
    except NotReady as e:
        raise APIError(503, "not_ready", str(e)) from None
    except TimeoutError:
        raise APIError(504, "inference_timeout", "the model did not answer in time") from None
    t2 = time.perf_counter()
    predictions = [{"file": name, **res} for (name, _), res in zip(images, results)]
    return Result(eng.cascade.version, predictions, round((t1 - t0) * 1000, 2), round((t2 - t1) * 1000, 2))


def native_body(result: Result) -> dict:
    """The native ``/predict`` answer: model version, the single image's manufacturer, family,
    type, answer and unsure at top level (when one image), every prediction, and timing in
    milliseconds."""
    body = {"model_version": result.model_version}
    if len(result.predictions) == 1:
        body.update({k: result.predictions[0][k] for k in ("manufacturer", "family", "type", "answer", "unsure")})
    body["predictions"] = result.predictions
    body["timing_ms"] = {"decode": result.decode_ms, "inference": result.inference_ms}
    return body


def flat_outputs(pred: dict) -> dict:
    """One prediction as named scalar outputs (the OIP v2 / TF Serving views).

    ``family`` / ``type`` are ``""`` and their probabilities 0.0 where the answer does not reach
    that level (no stage-2 model; a type not confident enough, see :class:`model.cascade.Cascade`).
    ``answer`` is the answer's label ("B77W", "B777 family" or "Boeing") and ``joint_probability``
    its joint probability.
    """
    t, f = pred["type"], pred["family"]
    best = pred["branches"][0]
    return {
        "manufacturer": pred["manufacturer"]["label"],
        "manufacturer_probability": pred["manufacturer"]["probability"],
        "family": f["label"] or "",
        "family_probability": f["probability"] if f["probability"] is not None else 0.0,
        "type": t["label"] or "",
        "type_probability": t["probability"] if t["probability"] is not None else 0.0,
        "answer": pred["answer"]["label"],
        "joint_probability": best["joint_probability"],
        "unsure": pred["unsure"],
    }
