"""The serving path shared by every protocol (native, plumber, OIP v2, TF Serving): HTTP in,
the model's one inference pipeline (:class:`model.pipeline.Pipeline`) through the worker's
micro-batching :class:`~api.engine.Engine`, HTTP out, with timing.

Nothing here decides an answer. The request thread runs the pipeline's per-image CPU steps
(``prepare``; for a version that crops to the aircraft, ``crop`` after the engine's batched
``locate``), the engine's batcher thread its batched forward passes; decode errors become HTTP
errors (:func:`prepare_all`).
"""

from __future__ import annotations

import base64
import binascii
import time
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from model import preprocessing as pp

from .engine import CLASSIFY, LOCATE, Engine, NotReady
from .errors import APIError

#: Seconds a request waits for its forward pass before answering 504 (below gunicorn's timeout).
INFERENCE_TIMEOUT_S = 60.0


#: Endpoints that classify: from the moment one starts until it submits its images, the
#: micro-batcher may wait for it (see :mod:`api.engine`).
CLASSIFY_ENDPOINTS = {"predict.predict_post", "predict.predict_get", "predict.names", "oip.infer",
                      "tfserving.predict"}


def install(app: Flask) -> None:
    """Announce every classification request to the engine when it starts (``Engine.begin``,
    ``Engine.expect``), withdraw the expectation when its images are submitted or the request
    ends, and tell the engine when it ends (``Engine.end``)."""

    @app.before_request
    def _expect():
        if request.endpoint in CLASSIFY_ENDPOINTS:
            eng = app.extensions["engine"]
            eng.begin()
            g._active_engine = eng
            expect(eng, LOCATE if eng.two_phase else CLASSIFY)

    @app.teardown_request
    def _release(exc):
        release_expectation()
        eng = g.pop("_active_engine", None)
        if eng is not None:
            eng.end()


def expect(eng: Engine, kind: str) -> None:
    """Announce that this request will submit work of ``kind`` next (``Engine.expect``),
    withdrawing what it announced before."""
    release_expectation()
    eng.expect(kind)
    g._expecting = (eng, kind)


def release_expectation() -> None:
    """Withdraw this request's ``Engine.expect`` (once; no-op outside a classification request)."""
    held = g.pop("_expecting", None)
    if held is not None:
        eng, kind = held
        eng.unexpect(kind)


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


#: ``?registration=`` values that ask for the reading / that do not (case-insensitive).
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def wants_registration(body_value=None, where: str = "registration") -> bool:
    """Whether the request asks for the registration reading: a JSON body's field when the
    request has one (``body_value``: ``true``/``false``), else the query parameter
    ``?registration=`` (:data:`TRUE_WORDS` / :data:`FALSE_WORDS`); absent: no.

    Raises:
        APIError: 400 ``bad_parameter`` for a body field that is not a boolean or a query value
            that is not one of those words (the message names ``where`` or the parameter).
    """
    if body_value is not None:
        if not isinstance(body_value, bool):
            raise APIError(400, "bad_parameter", f"{where} must be true or false, got {body_value!r}")
        return body_value
    raw = request.args.get("registration")
    if raw is None:
        return False
    word = raw.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise APIError(400, "bad_parameter", f"registration must be 1 or 0 (true/false), got {raw!r}")
    return word in TRUE_WORDS


def prepare_all(images: list[tuple[str, bytes]], pipeline, read: bool = False) -> list:
    """The per-image CPU work of every image (:meth:`model.pipeline.Pipeline.prepare`, keeping
    the upload for :meth:`~model.pipeline.Pipeline.read` when ``read``), in order.

    Returns:
        One :class:`model.pipeline.Inputs` per image.
    Raises:
        APIError: 413 ``too_large_image`` (over the pixel limit, decompression bomb, out of
            memory), 400 ``<code>_image`` for the other :class:`~model.preprocessing.ImageDecodeError`
            codes (``empty``, ``unsupported_format``, ``truncated``, ``unreadable``) and for an
            image Pillow cannot size; the message names the offending image.
    """
    out = []
    for name, data in images:
        try:
            out.append(pipeline.prepare(data, read=read))
        except pp.ImageDecodeError as e:
            status = 413 if e.code == "too_large" else 400
            raise APIError(status, f"{e.code}_image", f"{name}: {e}") from None
        except MemoryError:
            raise APIError(413, "too_large_image", f"{name}: image needs too much memory to decode") from None
        except ValueError as e:
            raise APIError(400, "unreadable_image", f"{name}: {e}") from None
    return out


@dataclass
class Result:
    """Classified images: ``predictions`` follows :meth:`model.cascade.Cascade.predict`, one dict
    per image in request order, each with ``file`` (the image's name in the request) added."""

    model_version: str
    predictions: list[dict]
    decode_ms: float
    inference_ms: float


@contextmanager
def _serving_errors():
    """Inside: the engine's ``NotReady`` becomes a 503 ``not_ready``, a forward pass that did not
    answer within :data:`INFERENCE_TIMEOUT_S` a 504 ``inference_timeout`` (:class:`APIError`)."""
    try:
        yield
    except NotReady as e:
        raise APIError(503, "not_ready", str(e)) from None
    except TimeoutError:
        raise APIError(504, "inference_timeout", "the model did not answer in time") from None


def run(images: list[tuple[str, bytes]], top_k: int, read: bool = False) -> Result:
    """Answer ``(name, encoded bytes)`` pairs through the worker's pipeline: the per-image CPU
    steps here (:meth:`~model.pipeline.Pipeline.prepare`, and for a two-phase version
    :meth:`~model.pipeline.Pipeline.crop` between the engine's :data:`~api.engine.LOCATE` and
    :data:`~api.engine.CLASSIFY` batches; with ``read``, :meth:`~model.pipeline.Pipeline.read`
    before the classify batch), the batched steps in the engine. ``decode_ms`` is the CPU work
    here (the registration reading included), ``inference_ms`` the waits for the engine.
    ``read`` without a registry (:attr:`~model.pipeline.Pipeline.reads` False) reads nothing:
    every ``registration`` is null.

    Raises:
        APIError: 400 ``no_images``; 413 ``too_many_images`` (over ``MAX_IMAGES_PER_REQUEST``);
            decode errors (see :func:`prepare_all`); 503 ``not_ready``; 504 ``inference_timeout``.
    """
    if not images:
        raise APIError(400, "no_images", "the request holds no image")
    limit = current_app.config["MAX_IMAGES_PER_REQUEST"]
    if len(images) > limit:
        raise APIError(413, "too_many_images", f"at most {limit} images per request, got {len(images)}")
    eng = engine()
    pipeline = eng.pipeline
    cpu = wait = 0.0
    with _serving_errors():
        t = time.perf_counter()
        batch = prepare_all(images, pipeline, read=read)
        if eng.two_phase:
            t, cpu = time.perf_counter(), cpu + time.perf_counter() - t
            expect(eng, LOCATE)  # a no-op change unless the request began while the models loaded
            futures = eng.submit(batch, LOCATE)
            release_expectation()
            batch = [f.result(timeout=INFERENCE_TIMEOUT_S) for f in futures]
            t, wait = time.perf_counter(), wait + time.perf_counter() - t
            expect(eng, CLASSIFY)  # the crops come next: a batch of crops being collected may wait for them
            batch = [pipeline.crop(b) for b in batch]
        for b in batch:
            pipeline.read(b)  # the registration, in this request's thread (a no-op unless asked)
        t, cpu = time.perf_counter(), cpu + time.perf_counter() - t
        futures = eng.submit(batch, CLASSIFY, top_k=top_k)
        release_expectation()
        del batch
        results = [f.result(timeout=INFERENCE_TIMEOUT_S) for f in futures]
        wait += time.perf_counter() - t
    predictions = [{"file": name, **res} for (name, _), res in zip(images, results)]
    return Result(pipeline.version, predictions, round(cpu * 1000, 2), round(wait * 1000, 2))


#: Keys of a single image's prediction repeated at the top level of the native answer.
TOP_LEVEL_KEYS = ("manufacturer", "family", "type", "answer", "aircraft", "box", "unsure", "unsure_reasons",
                  "registration")


def native_body(result: Result) -> dict:
    """The native ``/predict`` answer: model version; when one image, its manufacturer, family,
    type, answer, aircraft, box, unsure, unsure_reasons and registration at top level (:data:`TOP_LEVEL_KEYS`); every
    prediction; timing in milliseconds."""
    body = {"model_version": result.model_version}
    if len(result.predictions) == 1:
        body.update({k: result.predictions[0][k] for k in TOP_LEVEL_KEYS})
    body["predictions"] = result.predictions
    body["timing_ms"] = {"decode": result.decode_ms, "inference": result.inference_ms}
    return body


#: ``aircraft_probability`` of :func:`flat_outputs` when the version has no localizer (not measured).
NO_AIRCRAFT_PROBABILITY = -1.0
#: ``box`` of :func:`flat_outputs` when the answer came from the whole image (no crop).
NO_BOX = [-1, -1, -1, -1]


def flat_outputs(pred: dict) -> dict:
    """One prediction as named outputs (the OIP v2 / TF Serving views).

    - ``unsure_reasons``: why the answer is unsure, the codes of :data:`model.confidence.REASONS`
      joined by ``,`` (``"unusual_photo,views_disagree"``); ``""`` when sure.
    - ``answer_source``: ``image``, or ``registration`` when the type came from the registration
      painted on the aircraft (:func:`model.reader.fuse`).
    - ``registration``, ``registration_icao_type``: the registration read and the registry's ICAO
      type; ``""`` when none was read (not asked, no registry, nothing found);
      ``registration_agrees``: the registry's manufacturer is the answer's (false when none);
      ``registration_box``: 4 ints, the text's box in the uploaded image's pixels, or
      :data:`NO_BOX`.

    - ``manufacturer``: the label; ``""`` for answer level ``none`` (not an aircraft).
      ``family`` / ``type`` are ``""`` and their probabilities (and ``manufacturer_probability``
      for level ``none``) 0.0 where the answer does not reach that level (no stage-2 model,
      manufacturer ``Other``, a type not confident enough, no aircraft; see
      :class:`model.cascade.Cascade`).
    - ``answer``: the answer's label ("B77W", "B777 family", "Boeing", "Other" or "none");
      ``joint_probability`` its joint probability (0.0 for level ``none``).
    - ``answer_level``: ``type``, ``family``, ``manufacturer`` or ``none``; ``answer_text`` the
      answer in words ("Boeing B77W", "another manufacturer (not Airbus or Boeing)", "not an
      aircraft").
    - ``aircraft_probability``: the localizer's aircraft probability in [0, 1], or
      :data:`NO_AIRCRAFT_PROBABILITY` (-1.0) when the version has no localizer (not measured:
      0.0 would read as "certainly no aircraft").
    - ``box``: 4 ints ``[left, top, right, bottom]`` in the uploaded image's pixels (after EXIF
      rotation; right/bottom exclusive), or :data:`NO_BOX` (four -1) when the answer came from
      the whole image.
    """
    t, f, m = pred["type"], pred["family"], pred["manufacturer"]
    best = pred["branches"][0]
    none = pred["answer"]["level"] == "none"
    p_air = pred.get("aircraft", {}).get("probability")
    box = pred.get("box")
    reg = pred.get("registration")
    return {
        "manufacturer": m["label"] or "",
        "manufacturer_probability": m["probability"] if m["probability"] is not None else 0.0,
        "family": f["label"] or "",
        "family_probability": f["probability"] if f["probability"] is not None else 0.0,
        "type": t["label"] or "",
        "type_probability": t["probability"] if t["probability"] is not None else 0.0,
        "answer": pred["answer"]["label"],
        "joint_probability": 0.0 if none else best["joint_probability"],
        "unsure": pred["unsure"],
        "unsure_reasons": ",".join(pred.get("unsure_reasons", [])),
        "answer_level": pred["answer"]["level"],
        "answer_text": pred["answer"]["text"],
        "aircraft_probability": NO_AIRCRAFT_PROBABILITY if p_air is None else p_air,
        "box": list(NO_BOX) if box is None else [int(v) for v in box],
        "answer_source": pred["answer"].get("source", "image"),
        "registration": reg["text"] if reg else "",
        "registration_icao_type": reg["icao_type"] if reg else "",
        "registration_agrees": bool(reg and reg["agrees"]),
        "registration_box": [int(v) for v in reg["box"]] if reg else list(NO_BOX),
    }
