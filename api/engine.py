"""The inference engine of one worker process: model loading after fork, warm-up, readiness, and
dynamic micro-batching.

Each gunicorn worker builds its own :class:`Engine` when the app is created (after the fork;
TensorFlow never runs in the master). Loading runs in a background thread so ``/healthz`` answers
at once and ``/readyz`` turns 200 only when the models are loaded and warmed up.

Micro-batching: request threads put preprocessed images on a queue; one batcher thread takes up
to ``max_batch_size`` images, runs one forward pass and hands each request its rows. After the
first image it keeps collecting for at most ``max_batch_wait_ms``, but only while another
classification request is in the worker and has not submitted its images yet
(:meth:`Engine.expect`; it is reading or decoding them): a lone request is never delayed by the
wait, and under load the batch fills with the requests already in the worker.
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
        ready_wait_s: how long :meth:`predict` waits for models that are still loading.
        on_batch: called with the size of every forward pass (metrics).
        on_loaded: called with the engine once loading finished, ready or failed (metrics).
    """

    def __init__(self, model_dir: str, threshold: float = 0.6, max_batch_size: int = 8,
                 max_batch_wait_ms: float = 10.0, warmup: bool = True, on_batch=None,
                 ready_wait_s: float = 0.0, on_loaded=None):
        self.model_dir = model_dir
        self.threshold = threshold
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_batch_wait = max(0.0, float(max_batch_wait_ms)) / 1000.0
        self.warmup = warmup
        self.on_batch = on_batch
        self.on_loaded = on_loaded
        self.ready_wait_s = max(0.0, float(ready_wait_s))
        self.cascade = None
        self.state = "loading"
        self.reason = "models are loading"
        self.load_seconds: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._loaded = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Lock()

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
            if self.on_loaded is not None:
                self.on_loaded(self)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading finished (ready or failed); True when it finished in time."""
        return self._loaded.wait(timeout)

    def ensure_ready(self) -> None:
        """Wait up to ``ready_wait_s`` while the models load; raise :class:`NotReady` unless ready."""
        if self.state == "loading":
            self._loaded.wait(self.ready_wait_s)
        if not self.ready:
            raise NotReady(self.reason)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def spec(self):
        if not self.ready:
            raise NotReady(self.reason)
        return self.cascade.spec

    def expect(self) -> None:
        """Announce a request that will :meth:`submit` images soon (the batcher waits for it)."""
        with self._pending_lock:
            self._pending += 1

    def unexpect(self) -> None:
        """Withdraw one :meth:`expect` (after submitting, or when the request failed first)."""
        with self._pending_lock:
            self._pending = max(0, self._pending - 1)

    def submit(self, x: np.ndarray, top_k: int = 3) -> list[Future]:
        """Queue preprocessed images for the batcher.

        Args:
            x: float32 ``(n, H, W, 3)`` (see ``self.spec``).
        Returns:
            One future per image, resolving to its result dict (see
            :meth:`model.cascade.Cascade.predict`) or to the forward pass's exception.
        Raises:
            NotReady: models not loaded (see :meth:`ensure_ready`).
        """
        self.ensure_ready()
        futures = []
        for row in x:
            f: Future = Future()
            self._queue.put((row, top_k, f))
            futures.append(f)
        return futures

    def predict(self, x: np.ndarray, top_k: int = 3, timeout: float = 60.0) -> list[dict]:
        """Classify preprocessed images through the batcher (:meth:`submit` and wait).

        While the models are still loading (a fresh or replacement worker) the call waits up to
        ``ready_wait_s`` for them, so a worker that gunicorn just replaced queues requests instead
        of failing them.

        Returns:
            One result dict per image (see :meth:`model.cascade.Cascade.predict`).
        Raises:
            NotReady: models not loaded (failed, or still loading after ``ready_wait_s``).
            TimeoutError: no answer within ``timeout`` seconds.
        """
        return [f.result(timeout=timeout) for f in self.submit(x, top_k)]

    def _batcher(self) -> None:
        self._loaded.wait()
        while True:
            first = self._queue.get()
            items = [first]
            deadline = time.perf_counter() + self.max_batch_wait
            while len(items) < self.max_batch_size:
                try:
                    items.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._pending == 0:
                    break  # nobody else is about to submit: run now
                try:
                    items.append(self._queue.get(timeout=min(remaining, 0.001)))
                except queue.Empty:
                    pass
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
