"""The async API never strands a future: submit() racing close(), errors after close(), and
failed requests that do not keep their images alive through reference cycles."""

from __future__ import annotations

import gc
import random
import threading
import time
import traceback
import weakref
from concurrent.futures import CancelledError, Future, wait

import numpy as np
import pytest

import trtdet
from trtdet.batching import BatchingWorker
from trtdet.errors import ClosedError
from trtdet.scheduler import Scheduler

from .fake_model import NAME, POISON, fake_model, image


@pytest.fixture
def fake(tmp_path):
    with fake_model(tmp_path) as plugin:
        yield plugin


def _race_submits_against_shutdown(submit, shutdown, submitters: int = 3) -> tuple[list[Future], int]:
    """Threads submit until refused while the main thread shuts down; returns the futures and refusals."""
    futures: list[Future] = []
    refused = [0]
    lock = threading.Lock()
    start = threading.Barrier(submitters + 1)

    def client(seed: int) -> None:
        start.wait()
        for n in range(1000):
            try:
                future = submit(seed * 1000 + n)
            except ClosedError:
                with lock:
                    refused[0] += 1
                return
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(submitters)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(random.random() * 0.002)
    shutdown()
    for thread in threads:
        thread.join(30)
    return futures, refused[0]


def _stranded(futures: list[Future], timeout: float = 10.0) -> list[Future]:
    _, not_done = wait(futures, timeout=timeout)
    return list(not_done)


def test_thousands_of_submits_racing_shutdown_never_strand_a_future():
    random.seed(11)
    stranded = 0
    for trial in range(2000):
        worker = BatchingWorker(lambda items: [x * 2 for x in items], max_batch=4, max_wait_ms=0.1, max_in_flight=8)
        cancel = trial % 2 == 1
        futures, _ = _race_submits_against_shutdown(worker.submit, lambda w=worker, c=cancel: w.shutdown(wait=False, cancel_pending=c))
        left = _stranded(futures)
        stranded += len(left)
        assert not left, f"trial {trial}: {len(left)} of {len(futures)} futures never resolved"
        for future in futures:
            if not future.cancelled():
                assert future.result() % 2 == 0
        worker.shutdown(wait=True)
    assert stranded == 0


def test_submits_racing_detector_close_are_all_resolved_or_cancelled(fake):
    random.seed(12)
    for trial in range(150):
        detector = trtdet.load(NAME, backend="fake", batch=4)
        frame = image(20 + trial % 200)  # never the poison value
        futures, _ = _race_submits_against_shutdown(lambda n, d=detector, f=frame: d.submit(f), detector.close)
        assert not _stranded(futures), f"trial {trial}"
        for future in futures:
            if not future.cancelled():
                np.testing.assert_allclose(future.result().confidence, [frame[0, 0, 0] / 255], atol=1e-6)


def test_after_close_every_way_in_says_the_detector_is_closed(fake):
    detector = trtdet.load(NAME, backend="fake")
    assert len(detector.submit(image(20)).result(timeout=30)) == 1  # a worker was running
    detector.close()
    assert detector.closed
    for call in (lambda: detector.submit(image(20)), lambda: detector(image(20)), lambda: detector([image(20)]),
                 lambda: detector.detect([image(20)]), detector.scheduler):
        with pytest.raises(ClosedError, match="^detector is closed$"):
            call()
    assert detector._batcher is None  # no new worker thread was started
    detector.close()  # twice is harmless


def test_close_without_any_submit_then_submit_starts_no_worker(fake):
    detector = trtdet.load(NAME, backend="fake")
    detector.close()
    before = threading.active_count()
    with pytest.raises(ClosedError, match="detector is closed"):
        detector.submit(image(20))
    assert threading.active_count() == before


def test_close_waits_for_a_running_batch_instead_of_pulling_the_engine_from_under_it(fake):
    detector = trtdet.load(NAME, backend="fake")
    engine = detector.engine
    entered, release = threading.Event(), threading.Event()
    real = engine.infer_impl

    def slow(batch):
        entered.set()
        release.wait(10)
        return real(batch)

    engine.infer_impl = slow
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", detector(image(30))))
    thread.start()
    entered.wait(10)
    closer = threading.Thread(target=detector.close)
    closer.start()
    time.sleep(0.1)
    assert engine.is_active  # close() is waiting for the batch
    release.set()
    thread.join(10)
    closer.join(10)
    assert not engine.is_active
    np.testing.assert_allclose(result["value"].confidence, [30 / 255], atol=1e-6)


def test_failed_requests_do_not_keep_their_images_alive(fake):
    """Without the garbage collector: each failed future's traceback must not hold its batch."""
    gc.collect()
    gc.disable()
    try:
        with trtdet.load(NAME, backend="fake", batch=4) as detector:
            refs = []
            for _ in range(50):
                poison, good = image(POISON), image(40)
                refs += [weakref.ref(poison), weakref.ref(good)]
                futures = [detector.submit(poison), detector.submit(good)]
                with pytest.raises(ValueError, match="poisoned batch"):
                    futures[0].result(timeout=30)
                futures[1].result(timeout=30)
                del poison, good, futures
            time.sleep(0.05)
            alive = sum(ref() is not None for ref in refs)
            assert alive == 0, f"{alive} of {len(refs)} images kept alive by failed requests"
    finally:
        gc.enable()


def test_errors_raised_from_detect_many_do_not_keep_the_batch_alive(fake):
    gc.collect()
    gc.disable()
    try:
        with trtdet.load(NAME, backend="fake", batch=4) as detector:
            images = [image(10), image(POISON), image(30)]
            refs = [weakref.ref(im) for im in images]
            try:
                detector.detect(images)
            except ValueError as exc:
                error = exc
            assert "poisoned batch" in str(error)
            assert "_run_stages" in "".join(traceback.format_tb(error.__traceback__))  # still printable
            del images, error  # no cycle: dropping the exception frees the batch at once
            assert [ref() is None for ref in refs] == [True, True, True]
    finally:
        gc.enable()


def test_a_pipeline_returning_the_wrong_number_of_results_fails_each_item_not_the_worker():
    worker = BatchingWorker(lambda items: [1], max_batch=4, max_wait_ms=20)
    futures = [worker.submit(n) for n in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="returned 1 results for a batch of"):
            future.result(timeout=30)
    assert worker.submit(5).result(timeout=30) == 1  # the worker is still serving
    worker.shutdown()


def test_scheduler_close_returns_the_abandoned_tags():
    scheduler = Scheduler(lambda items: list(items), max_batch=8)
    scheduler.add(1, "a")
    scheduler.add(2, "b", run=False)
    assert scheduler.close() == ["a", "b"]


def test_cancelled_futures_raise_cancelled_error():
    worker = BatchingWorker(lambda items: (time.sleep(0.05), list(items))[1], max_batch=1, max_wait_ms=0)
    futures = [worker.submit(n) for n in range(20)]
    worker.shutdown(wait=True, cancel_pending=True)
    assert all(f.done() for f in futures)
    for future in futures:
        if future.cancelled():
            with pytest.raises(CancelledError):
                future.result()
