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

Two kinds of work (:data:`LOCATE`, :data:`CLASSIFY`): a version with a localizer that crops to
its box (``PreprocessingSpec.crop``) answers in two phases, each batched across requests — the localizer on the whole images (:meth:`Engine.submit_locate`),
then the classifier on the crops (:meth:`Engine.submit`); the request threads do every per-image
CPU step in between (decode, localizer input, box, crop and resize: :func:`api.inference.run`), so
the batcher thread only runs forward passes. A batch holds one kind; items of the other kind that
arrive while a batch is being collected are held back and start the next batch. Expectations are
per kind (``expect(kind)``): while collecting a batch the batcher waits only for requests about to
submit work of that kind. Without a localizer every request is one :data:`CLASSIFY` phase; with a
localizer that only gates (no crop, the default), too: each item carries the localizer's input
beside the classifier's, and the batcher runs both models on the batch.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

#: Work kinds of the batcher: the localizer on whole images, the cascade on (cropped) inputs.
LOCATE = "locate"
CLASSIFY = "classify"
KINDS = (LOCATE, CLASSIFY)


class _Item:
    """One image queued for the batcher: ``kind``, its input row, and what the answer needs."""

    __slots__ = ("kind", "row", "top_k", "future", "box", "aircraft", "loc")

    def __init__(self, kind, row, future, top_k=3, box=None, aircraft=None, loc=None):
        self.kind, self.row, self.future = kind, row, future
        self.top_k, self.box, self.aircraft, self.loc = top_k, box, aircraft, loc


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
        self._pending = {k: 0 for k in KINDS}
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

    @property
    def has_localizer(self) -> bool:
        """The loaded version has a localizer (False while loading)."""
        return self.ready and self.cascade.localizer is not None

    @property
    def two_phase(self) -> bool:
        """Requests answer in two phases: the version has a localizer *and* crops to its box, so
        the classifier's input waits for the localizer's map. A localizer without a crop rule
        (the default) only gates: its input and the classifier's are ready together and go in
        one :data:`CLASSIFY` item (:meth:`submit` with ``x_loc``). False while loading."""
        return self.has_localizer and self.cascade.crop_rule is not None

    def expect(self, kind: str = CLASSIFY) -> None:
        """Announce a request that will submit images of ``kind`` (:data:`LOCATE` through
        :meth:`submit_locate`, :data:`CLASSIFY` through :meth:`submit`) soon: the batcher waits
        for it while collecting a batch of that kind."""
        with self._pending_lock:
            self._pending[kind] += 1

    def unexpect(self, kind: str = CLASSIFY) -> None:
        """Withdraw one :meth:`expect` of ``kind`` (after submitting, or when the request failed first)."""
        with self._pending_lock:
            self._pending[kind] = max(0, self._pending[kind] - 1)

    def submit(self, x: np.ndarray, top_k: int = 3, boxes: list | None = None,
               aircraft: list | None = None, x_loc: np.ndarray | None = None) -> list[Future]:
        """Queue preprocessed images for the classifier (:data:`CLASSIFY`).

        Args:
            x: float32 ``(n, H, W, 3)`` (see ``self.spec``): whole images, or cut to their box.
            top_k: pairs listed per image. boxes: per image the box it was cut to
                (``[left, top, right, bottom]`` in the uploaded image's pixels) or ``None``;
                aircraft: per image the localizer's aircraft probability (float in [0, 1]) or
                ``None``; both default to all ``None`` (a version without localizer). See
                :meth:`model.cascade.Cascade.predict`. x_loc: float32 ``(n, S, S, 3)``, the
                localizer's inputs of the same images (a version whose localizer only gates):
                the batcher runs the localizer on them right before the classifier, in the same
                batch, and ``aircraft`` comes from it.
        Returns:
            One future per image, resolving to its result dict (see
            :meth:`model.cascade.Cascade.predict`) or to the forward pass's exception.
        Raises:
            NotReady: models not loaded (see :meth:`ensure_ready`).
        """
        self.ensure_ready()
        futures = []
        for i, row in enumerate(x):
            f: Future = Future()
            self._queue.put(_Item(CLASSIFY, row, f, top_k, None if boxes is None else boxes[i],
                                  None if aircraft is None else aircraft[i],
                                  None if x_loc is None else x_loc[i]))
            futures.append(f)
        return futures

    def submit_locate(self, x_loc: np.ndarray) -> list[Future]:
        """Queue whole images for the localizer (:data:`LOCATE`).

        Args:
            x_loc: float32 ``(n, S, S, 3)`` in [0, 1] (:meth:`model.cascade.Cascade.localizer_input`).
        Returns:
            One future per image, resolving to ``(aircraft, cam)``: the aircraft probability
            (float in [0, 1]) and the class activation map (float64 ``(S/32, S/32)``), see
            :func:`model.localize.run`; or to the forward pass's exception (``RuntimeError`` when
            the version has no localizer).
        Raises:
            NotReady: models not loaded (see :meth:`ensure_ready`).
        """
        self.ensure_ready()
        futures = []
        for row in x_loc:
            f: Future = Future()
            self._queue.put(_Item(LOCATE, row, f))
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

    def _collect(self, held: list) -> list:
        """The next batch: one kind, at most ``max_batch_size`` items, oldest first. ``held``
        (the batcher's own list) keeps items of the other kind for the following batch."""
        first = held.pop(0) if held else self._queue.get()
        kind = first.kind
        items, keep = [first], []
        for it in held:
            (items if it.kind == kind and len(items) < self.max_batch_size else keep).append(it)
        held[:] = keep
        deadline = time.perf_counter() + self.max_batch_wait
        while len(items) < self.max_batch_size:
            try:
                it = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._pending[kind] == 0:
                    break  # nobody else is about to submit work of this kind: run now
                try:
                    it = self._queue.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            (items if it.kind == kind else held).append(it)
        return items

    def _run(self, items: list) -> None:
        """One forward pass over ``items`` (one kind); resolves their futures."""
        if not self.ready:
            raise NotReady(self.reason)
        x = np.stack([it.row for it in items])
        if items[0].kind == LOCATE:
            if self.cascade.localizer is None:
                raise RuntimeError(f"model version {self.cascade.version} has no localizer")
            from model.localize import run

            aircraft, cams = run(self.cascade.localizer, x)
            for it, a, cam in zip(items, aircraft, cams):
                it.future.set_result((float(a), cam))
            return
        gated = [it for it in items if it.loc is not None]
        if gated:  # the localizer's gate, on the same batch, right before the classifier
            for it, a in zip(gated, self.cascade.gate(np.stack([it.loc for it in gated]))):
                it.aircraft = float(a)
        air = [it.aircraft for it in items]
        results = self.cascade.predict(x, top_k=max(it.top_k for it in items), boxes=[it.box for it in items],
                                       aircraft=None if any(a is None for a in air) else np.asarray(air, np.float64))
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
