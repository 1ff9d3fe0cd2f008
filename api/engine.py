"""The inference engine of one worker process: model loading after fork, warm-up, readiness, and
dynamic micro-batching.

Each gunicorn worker builds its own :class:`Engine` when the app is created (after the fork;
TensorFlow never runs in the master). Loading runs in a background thread so ``/healthz`` answers
at once and ``/readyz`` turns 200 only when the models are loaded and warmed up.

Micro-batching: request threads put preprocessed images on a queue; one batcher thread takes up
to ``max_batch_size`` images, waiting at most ``max_batch_wait_ms`` after the first for more, runs
one forward pass and hands each request its rows.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class NotReady(RuntimeError):
    """The models are not loaded (yet, or loading failed: ``reason`` says why)."""


class Engine:
    """Owns a :class:`model.cascade.Cascade` and serialises access to it through a batcher.

    Args:
        model_dir: model version folder; threshold: routing threshold.
        max_batch_size: most images per forward pass (>= 1); max_batch_wait_ms: how long the
            batcher waits after the first queued image for more (milliseconds, >= 0).
    """

    def __init__(self, model_dir: str, threshold: float = 0.6, max_batch_size: int = 16,
                 max_batch_wait_ms: float = 5.0, warmup: bool = True, on_batch=None):
        self.model_dir = model_dir
        self.threshold = threshold
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_batch_wait = max(0.0, float(max_batch_wait_ms)) / 1000.0
        self.warmup = warmup
        self.on_batch = on_batch
        self.cascade = None
        self.state = "loading"
        self.reason = "models are loading"
        self.load_seconds: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._loaded = threading.Event()

    def start(self, background: bool = True) -> "Engine":
        """Load the models (in a daemon thread when ``background``) and start the batcher."""
        if background:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        else:
            self._load()
        threading.Thread(target=self._batcher, name="micro-batcher", daemon=True).start()
        return self

    def _load(self) -> None:
        t = time.perf_counter()
        try:
            from model.cascade import Cascade

            cascade = Cascade.load(self.model_dir, threshold=self.threshold)
            if self.warmup:
                cascade.warm_up(batch_sizes=sorted({1, self.max_batch_size}))
            self.cascade = cascade
            self.state, self.reason = "ready", "ok"
        except Exception as e:  # noqa: BLE001 - any failure is reported by /readyz
            self.state, self.reason = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.load_seconds = time.perf_counter() - t
            self._loaded.set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading finished (ready or failed); True when it finished in time."""
        return self._loaded.wait(timeout)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def spec(self):
        if not self.ready:
            raise NotReady(self.reason)
        return self.cascade.spec

    def predict(self, x: np.ndarray, top_k: int = 3, timeout: float = 60.0) -> list[dict]:
        """Classify preprocessed images through the batcher.

        Args:
            x: float32 ``(n, H, W, 3)`` (see ``self.spec``).
        Returns:
            One result dict per image (see :meth:`model.cascade.Cascade.predict`).
        Raises:
            NotReady: models not loaded. TimeoutError: no answer within ``timeout`` seconds.
        """
        if not self.ready:
            raise NotReady(self.reason)
        futures = []
        for row in x:
            f: Future = Future()
            self._queue.put((row, top_k, f))
            futures.append(f)
        return [f.result(timeout=timeout) for f in futures]

    def _batcher(self) -> None:
        self._loaded.wait()
        while True:
            first = self._queue.get()
            items = [first]
            deadline = time.perf_counter() + self.max_batch_wait
            while len(items) < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    items.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            if self.on_batch is not None:
                self.on_batch(len(items))
            try:
                if not self.ready:
                    raise NotReady(self.reason)
                x = np.stack([it[0] for it in items])
                results = self.cascade.predict(x, top_k=max(it[1] for it in items))
                for (row, top_k, fut), res in zip(items, results):
                    res["top_k"] = res["top_k"][:top_k]
                    fut.set_result(res)
            except Exception as e:  # noqa: BLE001 - hand the error to every waiting request
                for it in items:
                    if not it[2].done():
                        it[2].set_exception(e)
