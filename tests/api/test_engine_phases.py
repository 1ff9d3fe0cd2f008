"""The engine's two kinds of work in one process (no HTTP): batches hold one kind, items of the
other kind are held for the next batch in arrival order, the wait is per kind, and the real
feature model answers the same through the engine's two phases as ``Pipeline.predict``."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from api.engine import CLASSIFY, LOCATE, Engine, _Item
from model.pipeline import Inputs, Pipeline


def _items(engine, kinds):
    out = []
    for i, k in enumerate(kinds):
        it = _Item(k, np.full((2,), i, np.float32), Future())
        engine._queue.put(it)
        out.append(it)
    return out


def test_a_batch_holds_one_kind_and_the_other_waits_in_order():
    eng = Engine("/nonexistent", max_batch_size=3, max_batch_wait_ms=0)
    items = _items(eng, [LOCATE, CLASSIFY, LOCATE, CLASSIFY, LOCATE, LOCATE, CLASSIFY])
    held: list = []
    batches = [eng._collect(held) for _ in range(3)]
    ids = [[items.index(it) for it in b] for b in batches]
    # L0 starts; C1 and C3 are held while L2, L4 fill the batch; the held C1, C3 start the next
    # one, which L5 (held now) cannot join and C6 completes; L5 is last
    assert ids == [[0, 2, 4], [1, 3, 6], [5]]
    assert all(len({it.kind for it in b}) == 1 for b in batches)
    assert not held and eng._queue.empty()


def test_the_wait_is_per_kind():
    """A batch of one kind does not wait for a request that is about to submit the other kind."""
    eng = Engine("/nonexistent", max_batch_size=8, max_batch_wait_ms=300)
    eng.expect(CLASSIFY)
    _items(eng, [LOCATE])
    t = time.perf_counter()
    assert len(eng._collect([])) == 1
    assert time.perf_counter() - t < 0.2  # no CLASSIFY item can join a LOCATE batch: no wait
    eng.unexpect(CLASSIFY)
    eng.expect(LOCATE)
    _items(eng, [LOCATE])
    late = _Item(LOCATE, np.zeros(2, np.float32), Future())
    threading.Timer(0.05, lambda: eng._queue.put(late)).start()
    batch = eng._collect([])
    assert len(batch) == 2 and batch[1] is late  # waited for the announced request


@pytest.fixture(scope="module")
def feature_engine(feature_model_dir):
    eng = Engine(str(feature_model_dir), max_batch_size=8, max_batch_wait_ms=5, warmup=False)
    eng.start(background=False)
    assert eng.ready, eng.reason
    return eng


def test_engine_two_phases_equal_the_pipeline(feature_engine, feature_image_dir):
    """prepare here, locate in the engine, crop here, forward in the engine: the answers of
    Pipeline.predict (all images in one batch)."""
    pipeline = feature_engine.pipeline
    paths = sorted(feature_image_dir.iterdir())
    batch = [pipeline.prepare(p) for p in paths]
    assert all(b.x is None and b.image is not None for b in batch)  # the crop waits for the localizer
    located = [f.result(30) for f in feature_engine.submit(batch, LOCATE)]
    assert all(b.aircraft is not None and b.cam is not None for b in located)
    cropped = [pipeline.crop(b) for b in located]
    assert all(b.image is None and b.x is not None for b in cropped)
    got = [f.result(30) for f in feature_engine.submit(cropped, CLASSIFY, top_k=2)]
    ref = Pipeline(feature_engine.cascade).predict(paths, top_k=2)
    assert got == ref  # same batches (all images at once, <= max_batch_size): identical
    assert any(g["box"] is not None for g in got)


def test_locate_without_localizer_fails_the_future(tiny_model_dir):
    eng = Engine(str(tiny_model_dir), warmup=False).start(background=False)
    assert not eng.pipeline.has_localizer
    fut = eng.submit([Inputs(x_loc=np.zeros((96, 96, 3), np.float32))], LOCATE)[0]
    with pytest.raises(RuntimeError, match="no localizer"):
        fut.result(30)


@pytest.fixture(scope="module")
def gate_only_dir(tmp_path_factory):
    """A version whose localizer only gates (no crop rule: the default recipe), with ``Other``."""
    from tests.conftest import build_tiny_cascade

    return build_tiny_cascade(tmp_path_factory.mktemp("gate-only"), localizer_size=96, other=True,
                              aircraft_threshold=0.0)


def test_a_gate_only_version_answers_in_one_phase_equal_to_the_pipeline(gate_only_dir, feature_image_dir):
    """Localizer and classifier inputs go in one CLASSIFY item; the batcher runs both models on
    the batch: the answers are those of Pipeline.predict, with the gate's probability."""
    eng = Engine(str(gate_only_dir), max_batch_size=8, max_batch_wait_ms=5, warmup=False).start(background=False)
    assert eng.pipeline.has_localizer and not eng.two_phase
    assert eng.pipeline.stages[:3] == ["decode", "gate", "classify"]  # then "read" when a registry is loaded
    paths = sorted(feature_image_dir.iterdir())
    batch = [eng.pipeline.prepare(p) for p in paths]
    assert all(b.x is not None and b.x_loc is not None and b.aircraft is None for b in batch)
    got = [f.result(30) for f in eng.submit(batch, CLASSIFY, top_k=2)]
    ref = Pipeline(eng.cascade).predict(paths, top_k=2)
    assert got == ref
    assert all(g["aircraft"]["probability"] is not None and g["box"] is None for g in got)


def test_the_feature_version_crops_so_it_keeps_two_phases(feature_engine):
    assert feature_engine.two_phase and "crop" in feature_engine.pipeline.stages


def test_a_saturated_worker_waits_for_the_clients_it_just_answered():
    """Eight clients that fell into two alternating groups of four: with four requests queued and
    eight in the worker moments ago, the batch waits for the answered four to come back."""
    eng = Engine("/nonexistent", max_batch_size=8, max_batch_wait_ms=300)
    for _ in range(8):
        eng.begin()
    for _ in range(4):
        eng.end()  # the group just answered left; its clients are about to send again
    assert eng.recent_peak() == 8
    _items(eng, [CLASSIFY] * 4)
    late = [_Item(CLASSIFY, np.zeros(2, np.float32), Future()) for _ in range(4)]
    threading.Timer(0.05, lambda: [eng._queue.put(it) for it in late]).start()
    t = time.perf_counter()
    batch = eng._collect([])
    assert len(batch) == 8 and batch[4:] == late
    assert time.perf_counter() - t < 0.25  # full, so it did not wait out the 300 ms


def test_four_clients_are_not_kept_waiting_for_a_fifth():
    eng = Engine("/nonexistent", max_batch_size=8, max_batch_wait_ms=300)
    for _ in range(4):
        eng.begin()
    _items(eng, [CLASSIFY] * 4)
    t = time.perf_counter()
    assert len(eng._collect([])) == 4
    assert time.perf_counter() - t < 0.1
    lone = Engine("/nonexistent", max_batch_size=8, max_batch_wait_ms=300)
    lone.begin()
    _items(lone, [CLASSIFY])
    t = time.perf_counter()
    assert len(lone._collect([])) == 1 and time.perf_counter() - t < 0.1
