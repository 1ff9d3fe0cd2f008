"""Prometheus metrics, correct with several gunicorn workers (prometheus_client multiprocess mode).

gunicorn's master (``api/gunicorn_conf.py``) creates ``PROMETHEUS_MULTIPROC_DIR`` before forking and
marks dead workers in ``child_exit``; every worker writes its samples to memory-mapped files there,
and ``GET /metrics`` (answered by any worker) aggregates all of them with
``prometheus_client.multiprocess.MultiProcessCollector``. Without that variable (a plain Flask run,
in-process tests) the process's default registry is exposed.

Metrics (names follow the Prometheus naming guide: base units, ``_total`` for counters):

- ``planespotter_requests_total{route, method, status}``: counter of answered requests;
- ``planespotter_request_duration_seconds{route, method, status}``: latency histogram (seconds);
- ``planespotter_requests_in_flight``: requests being handled now, summed over live workers;
- ``planespotter_batch_size``: images per forward pass of the micro-batcher (histogram);
- ``planespotter_model_load_seconds{pid}``: model load + warm-up time of each live worker;
- ``planespotter_model_ready{pid}``: 1 when that worker's models are loaded and warmed, else 0.

``route`` is the Flask URL rule (``/v2/models/<name>/infer``), never the raw path, so label
cardinality stays bounded; requests that match no rule are labelled ``unmatched``.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

#: Latency buckets in seconds: 2.5 ms .. 30 s (client default buckets stop at 10 s).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Batch-size buckets: powers of two up to 128 images.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def multiprocess_dir() -> str | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    return d if d and os.path.isdir(d) else None


class Metrics:
    """The server's metric objects, created once per process.

    prometheus_client keeps metric objects in a process-wide registry, so the objects are module
    singletons (:func:`get`): a second app in the same process (tests) reuses them.
    """

    def __init__(self):
        self.requests = Counter("planespotter_requests_total", "HTTP requests answered",
                                ["route", "method", "status"])
        self.latency = Histogram("planespotter_request_duration_seconds", "HTTP request latency in seconds",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS)
        self.in_flight = Gauge("planespotter_requests_in_flight", "HTTP requests being handled now",
                               multiprocess_mode="livesum")
        self.batch_size = Histogram("planespotter_batch_size", "Images per forward pass (micro-batching)",
                                    buckets=BATCH_BUCKETS)
        self.load_seconds = Gauge("planespotter_model_load_seconds",
                                  "Seconds one worker took to load and warm up the models",
                                  multiprocess_mode="liveall")
        self.model_ready = Gauge("planespotter_model_ready", "1 when this worker's models are loaded and warm",
                                 multiprocess_mode="liveall")


_metrics: Metrics | None = None


def get() -> Metrics:
    """The process's :class:`Metrics` (created on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def on_batch(size: int) -> None:
    """Engine hook: record one forward pass of ``size`` images."""
    get().batch_size.observe(size)


def on_loaded(engine) -> None:
    """Engine hook: record load time and readiness of this worker."""
    m = get()
    m.load_seconds.set(engine.load_seconds or 0.0)
    m.model_ready.set(1 if engine.ready else 0)


def exposition() -> tuple[bytes, str]:
    """The text exposition of all metrics (aggregated over workers in multiprocess mode)."""
    d = multiprocess_dir()
    if d:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=d)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def install(app: Flask) -> None:
    """Count and time every request of ``app`` and add ``GET /metrics``."""
    m = get()
    m.model_ready.set(0)

    @app.before_request
    def _start():
        g._metrics_t0 = time.perf_counter()
        m.in_flight.inc()

    @app.after_request
    def _record(resp):
        t0 = g.pop("_metrics_t0", None)
        if t0 is not None:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            labels = (route, request.method, str(resp.status_code))
            m.requests.labels(*labels).inc()
            m.latency.labels(*labels).observe(time.perf_counter() - t0)
            m.in_flight.dec()
        return resp

    @app.teardown_request
    def _teardown(exc):
        # after_request did not run (an exception escaped every handler): keep the gauge right.
        if g.pop("_metrics_t0", None) is not None:
            m.in_flight.dec()

    @app.get("/metrics")
    def metrics():
        """Prometheus metrics of all workers.
        ---
        get:
          tags: [operations]
          summary: Prometheus metrics (text exposition format)
          description: Request count and latency by route and status, in-flight requests, micro-batch
            sizes, model load time; aggregated over every gunicorn worker (multiprocess mode).
          responses:
            "200":
              description: Prometheus text exposition format 0.0.4
              content:
                text/plain:
                  schema: {type: string}
        """
        body, ctype = exposition()
        return Response(body, content_type=ctype)
