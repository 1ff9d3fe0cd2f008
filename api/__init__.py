"""The planespotter HTTP API: a Flask app factory served by gunicorn.

``gunicorn -c python:api.gunicorn_conf "api:create_app()"`` builds one app per worker, after the
fork, so TensorFlow and the models load in the workers and never in the master.
"""

from __future__ import annotations

from flask import Flask

from .config import Config


def create_app(config: dict | None = None, start_engine: bool = True) -> Flask:
    """Build the app.

    Args:
        config: overrides of :class:`api.config.Config` keys (e.g. ``{"MODEL_DIR": ...}``);
            the environment (``PLANESPOTTER_<KEY>``) is read first.
        start_engine: load the models (in a background thread) right away.
    Returns:
        The Flask app; ``app.extensions["engine"]`` is its :class:`api.engine.Engine`. Routes: the
        web page ``/``, probes, ``/metadata``, ``/metrics``, native and plumber classification,
        OIP v2 (``/v2/...``), TF Serving (``/v1/models/...``), ``/openapi.json`` and ``/__docs__/``.
    """
    # deferred: gunicorn's master imports api for its config; prometheus_client must load after on_starting
    from . import errors, inference, metrics
    from .engine import Engine
    from .routes import docs, health, meta, oip, predict, tfserving, web

    app = Flask(__name__, static_folder=None)
    app.config.update(Config.from_env())
    app.config.update(config or {})
    app.json.sort_keys = False
    engine = Engine(app.config["MODEL_DIR"], threshold=app.config["THRESHOLD"],
                    max_batch_size=app.config["MAX_BATCH_SIZE"],
                    max_batch_wait_ms=app.config["MAX_BATCH_WAIT_MS"], warmup=app.config["WARMUP"],
                    ready_wait_s=app.config["READY_WAIT_S"], on_batch=metrics.on_batch,
                    on_loaded=metrics.on_loaded)
    app.extensions["engine"] = engine
    errors.register(app)
    metrics.install(app)
    inference.install(app)
    for blueprint in (web.bp, health.bp, meta.bp, predict.bp, oip.bp, tfserving.bp, docs.bp):
        app.register_blueprint(blueprint)
    if start_engine:
        engine.start(background=True)
    return app
