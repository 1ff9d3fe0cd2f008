"""The inference engine of one worker process: model loading after fork, warm-up, readiness, and
dynamic micro-batching.

Each gunicorn worker builds its own :class:`Engine` when the app is created (after the fork;
TensorFlow never runs in the master). Loading runs in a background thread so ``/healthz`` answers
at once and ``/readyz`` turns 200 only when the models are loaded and warmed up.

Micro-batching: request threads put prepared images (:class:`model.pipeline.Inputs`) on a queue;
one batcher thread takes up to ``max_batch_size`` of them, runs one batched step of the inference
pipeline (:class:`model.pipeline.Pipeline`) and hands each request its answer. After the first
image it keeps collecting for at most ``max_batch_wait_ms``, but only while another
classification request is in the worker and has not submitted its images yet
(:meth:`Engine.expect`; it is reading or decoding them), or while a saturated worker's batch is
smaller than the number of requests it held at once in the last seconds
(:meth:`Engine.recent_peak`: the clients of the batch just answered are about to send again). A
lone request is never delayed by the wait, and under load the batch fills with the requests of
every client instead of alternating halves.

The engine decides nothing about an answer: what is computed is the pipeline's. Two kinds of
work (:data:`LOCATE`, :data:`CLASSIFY`) follow the pipeline's batched steps: a version that crops
to the aircraft (:attr:`model.pipeline.Pipeline.two_phase`) answers in two phases, each batched
across requests — :meth:`~model.pipeline.Pipeline.locate` on the whole images, then
:meth:`~model.pipeline.Pipeline.forward` on the crops; the request threads run the per-image CPU
steps (:meth:`~model.pipeline.Pipeline.prepare`, :meth:`~model.pipeline.Pipeline.crop`), so the
batcher thread only runs forward passes. A batch holds one kind; items of the other kind that
arrive while a batch is being collected are held back and start the next batch. Expectations are
per kind (``expect(kind)``): while collecting a batch the batcher waits only for requests about to
submit work of that kind. Every other version answers in one :data:`CLASSIFY` phase (a localizer
that only gates runs inside ``forward``, on the same batch).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future


#: Work kinds of the batcher: the localizer on whole images, the cascade on (cropped) inputs.
LOCATE = "locate"
CLASSIFY = "classify"
KINDS = (LOCATE, CLASSIFY)
#: Seconds over which :meth:`Engine.recent_peak` remembers how many requests were in the worker.
PEAK_WINDOW_S = 2.0


class _Item:
    """One image queued for the batcher: ``kind``, its :class:`model.pipeline.Inputs`, its future
    and the ``top_k`` its answer lists."""

    __slots__ = ("kind", "inputs", "top_k", "future")

    def __init__(self, kind, inputs, future, top_k=3):
        self.kind, self.inputs, self.future, self.top_k = kind, inputs, future, top_k


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
        self.pipeline = None  # model.pipeline.Pipeline, once loaded
        self.cascade = None  # its model.cascade.Cascade (version, labels, spec)
        self.state = "loading"
        self.reason = "models are loading"
        self.load_seconds: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._loaded = threading.Event()
        self._pending = {k: 0 for k in KINDS}
        self._pending_lock = threading.Lock()
        self._active = 0  # classification requests in the worker (begin .. end)
        self._peaks: deque = deque()  # (time, active) of the last PEAK_WINDOW_S seconds

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
            from model.pipeline import Pipeline  # deferred: TensorFlow start-up, in the loader thread
            from model.registry import load_configured

            registry = load_configured()  # RegistryError (names the file): the worker reports "failed"
            pipeline = Pipeline.load(self.model_dir, threshold=self.threshold, registry=registry)
            if self.warmup:
                pipeline.warm_up(batch_sizes=sorted({1, self.max_batch_size}))
            self.pipeline, self.cascade = pipeline, pipeline.cascade
            self.state, self.reason = "ready", "ok"
        except Exception as e:  # noqa: BLE001 - any failure is reported by /readyz
            self.state, self.reason = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.load_seconds = time.perf_counter() - t
            self._loaded.set()
            if self.on_loaded is not None:
                self.on_loaded(self)

    def registration(self) -> dict:
        """Whether this worker reads registrations: ``{"available": bool, "registry": path or
        None, "entries": int or None}`` (``available`` False without a registry, or until loaded)."""
        reg = self.pipeline.registry if self.pipeline is not None else None
        return {"available": reg is not None, "registry": None if reg is None else str(reg.path),
                "entries": None if reg is None else reg.size}

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

    @property
    def two_phase(self) -> bool:
        """Requests answer in two phases (:attr:`model.pipeline.Pipeline.two_phase`: the version
        crops to the localizer's box, so the classifier's input waits for the localizer's map);
        False while loading."""
        return self.ready and self.pipeline.two_phase

    def begin(self) -> None:
        """A classification request entered the worker (it ends with :meth:`end`)."""
        with self._pending_lock:
            self._active += 1
            self._peaks.append((time.perf_counter(), self._active))

    def end(self) -> None:
        """A classification request left the worker (answered or failed)."""
        with self._pending_lock:
            self._active = max(0, self._active - 1)

    def recent_peak(self) -> int:
        """The most classification requests that were in the worker at once during the last
        :data:`PEAK_WINDOW_S` seconds (at least those in it now): the clients that keep it busy."""
        with self._pending_lock:
            cut = time.perf_counter() - PEAK_WINDOW_S
            while self._peaks and self._peaks[0][0] < cut:
                self._peaks.popleft()
            return max([self._active] + [a for _, a in self._peaks])

    def expect(self, kind: str = CLASSIFY) -> None:
        """Announce a request that will submit images of ``kind`` (:meth:`submit`) soon: the batcher
        waits for it while collecting a batch of that kind."""
        with self._pending_lock:
            self._pending[kind] += 1

    def unexpect(self, kind: str = CLASSIFY) -> None:
        """Withdraw one :meth:`expect` of ``kind`` (after submitting, or when the request failed first)."""
        with self._pending_lock:
            self._pending[kind] = max(0, self._pending[kind] - 1)

    def submit(self, batch: list, kind: str = CLASSIFY, top_k: int = 3) -> list[Future]:
        """Queue prepared images (:class:`model.pipeline.Inputs`, :meth:`model.pipeline.Pipeline.prepare`)
        for one batched step of the pipeline.

        Args:
            batch: the inputs, one per image.
            kind: :data:`CLASSIFY` (:meth:`model.pipeline.Pipeline.forward`: the gate when the
                version has one, the cascade, the answer; two-phase inputs must have been cropped)
                or :data:`LOCATE` (:meth:`model.pipeline.Pipeline.locate`: the localizer on the
                whole images, before the crop).
            top_k: pairs listed per answer (:data:`CLASSIFY`).
        Returns:
            One future per image, resolving for :data:`CLASSIFY` to its answer dict (see
            :meth:`model.cascade.Cascade.predict`), for :data:`LOCATE` to its ``Inputs`` with
            ``aircraft`` and ``cam`` set; or to the forward pass's exception (``RuntimeError`` for
            :data:`LOCATE` on a version without localizer).
        Raises:
            NotReady: models not loaded (see :meth:`ensure_ready`).
        """
        self.ensure_ready()
        futures = []
        for inputs in batch:
            f: Future = Future()
            self._queue.put(_Item(kind, inputs, f, top_k))
            futures.append(f)
        return futures

    def _collect(self, held: list) -> list:
        """The next batch: one kind, at most ``max_batch_size`` items, oldest first. ``held``
        (the batcher's own list) keeps items of the other kind for the following batch."""
        first = held.pop(0) if held else self._queue.get()
        kind = first.kind
        items, keep = [first], []
        for it in held:
            (items if it.kind == kind and len(items) < self.max_batch_size else keep).append(it)
        held[:] = keep
        # Under steady load the requests fall into groups that alternate (the clients of the batch
        # just answered send again while the next group runs): each batch would hold only part of
        # the clients. While the batch is smaller than the number of requests that kept the worker
        # busy in the last PEAK_WINDOW_S (and work was already waiting: the worker is saturated),
        # it waits, up to max_batch_wait, for the answered clients' next requests too.
        saturated = len(items) > 1 or bool(keep) or not self._queue.empty()
        target = min(self.max_batch_size, self.recent_peak()) if saturated else 0
        deadline = time.perf_counter() + self.max_batch_wait
        while len(items) < self.max_batch_size:
            try:
                it = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or (self._pending[kind] == 0 and len(items) >= target):
                    break  # nobody else is about to submit work of this kind: run now
                try:
                    it = self._queue.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            (items if it.kind == kind else held).append(it)
        return items

    def _run(self, items: list) -> None:
        """One batched pipeline step over ``items`` (one kind); resolves their futures."""
        if not self.ready:
            raise NotReady(self.reason)
        batch = [it.inputs for it in items]
        if items[0].kind == LOCATE:
            self.pipeline.locate(batch)
            for it in items:
                it.future.set_result(it.inputs)
            return
        results = self.pipeline.forward(batch, top_k=max(it.top_k for it in items))
        for it, res in zip(items, results):
            res["top_k"] = res["top_k"][:it.top_k]
            it.future.set_result(res)

    def _batcher(self) -> None:
        self._loaded.wait()
        held: list = []
        while True:
            items = self._collect(held)
            if self.on_batch is not None:
                self.on_batch(len(items))
            try:
                self._run(items)
            except Exception as e:  # noqa: BLE001 - hand the error to every waiting request
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(e)
