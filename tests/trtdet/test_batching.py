"""`Detector.submit` under concurrency: nothing lost, swapped or leaked across futures."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import trtdet
from tests.concurrent_submits import submit_from_threads
from trtdet.batching import BatchingWorker
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.plugins import register_plugin, unregister_plugin


def _tiny_head_onnx(path) -> None:
    """[B,3,32,32] -> [B, 5, 16]: a v8-shaped head (4 box + 1 class) that depends on every image."""
    rng = np.random.default_rng(0)
    weight = rng.uniform(0, 1, (5, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["pooled", "w"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["raw"]),
        helper.make_node("Mul", ["raw", "scale"], ["output0"]),
    ]
    inits = [
        helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel()),
        helper.make_tensor("shape", TensorProto.INT64, [3], [0, 5, 16]),
        helper.make_tensor("scale", TensorProto.FLOAT, [1, 5, 1], [20, 20, 10, 10, 0.5]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["B", 5, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    _tiny_head_onnx(path)

    class TinyPlugin:
        @hookimpl
        def trtdet_register_models(self, register):
            register(ModelSpec(name="tiny-test", class_names=("blob",), input_size=(32, 32), conf_threshold=0.0,
                               iou_threshold=0.5, default_model=lambda: path))

        @hookimpl
        def trtdet_decoder(self, model, device):
            if model.name == "tiny-test":
                from trtdet_yolo.decode import YoloDecoder

                return YoloDecoder(1, 0.0, 0.5, 5)
            return None

    register_plugin(TinyPlugin(), "tiny-test-plugin")
    detector = trtdet.load("tiny-test", batch=8)
    yield detector
    detector.close()
    unregister_plugin("tiny-test-plugin")


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(20, 80), rng.integers(20, 80), 3), dtype=np.uint8) for _ in range(n)]


def _same(a: trtdet.Detections, b: trtdet.Detections) -> bool:
    return len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=1e-4) and np.allclose(a.confidence, b.confidence, atol=1e-5) and np.array_equal(a.class_id, b.class_id)


@pytest.mark.slow
def test_eight_threads_by_a_thousand_submits_each_get_their_own_result(tiny_detector):
    per_thread = 1000
    images = _images(64, seed=1)
    expected = [tiny_detector(image) for image in images]
    assert all(len(e) > 0 for e in expected)
    draws = [np.random.default_rng(100 + k).integers(0, len(images), per_thread) for k in range(8)]
    results = submit_from_threads(tiny_detector, images, lambda k, n: int(draws[k][n]), per_thread=per_thread,
                                  timeout=120)
    assert len(results) == 8 * per_thread
    mismatched = [i for i, detections in results if not _same(detections, expected[i])]
    assert not mismatched


def test_a_failing_image_fails_only_its_own_future(tiny_detector):
    images = _images(7, seed=2)
    futures = [tiny_detector.submit(image) for image in images[:3]]
    # Arrays are checked (or converted) by submit() itself; a torch CPU tensor passes that check
    # (GPU-decoded frames are tensors) and then fails in the CPU preprocessor, inside its batch.
    bad = tiny_detector.submit(torch.zeros((5, 5), dtype=torch.float64))
    futures += [tiny_detector.submit(image) for image in images[3:]]
    with pytest.raises(Exception):  # noqa: B017 - whatever cv2/numpy raise, it reaches this future only
        bad.result(timeout=30)
    for image, future in zip(images, futures, strict=True):
        assert _same(future.result(timeout=30), tiny_detector(image))


def test_shutdown_resolves_or_cancels_every_request():
    started = threading.Event()
    release = threading.Event()

    def slow_batch(items):
        started.set()
        release.wait(5)
        return [x * 2 for x in items]

    worker = BatchingWorker(slow_batch, max_batch=4, max_wait_ms=1)
    futures = [worker.submit(i) for i in range(50)]
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    worker.shutdown(wait=True, cancel_pending=True)
    done = [f for f in futures if not f.cancelled()]
    assert all(f.done() for f in futures)
    assert done and all(f.result() == 2 * futures.index(f) for f in done)
    assert any(f.cancelled() for f in futures)
    for f in futures:
        if f.cancelled():
            with pytest.raises(CancelledError):
                f.result()
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit(1)


def test_shutdown_without_cancel_finishes_everything():
    worker = BatchingWorker(lambda items: [x + 1 for x in items], max_batch=3, max_wait_ms=1)
    futures = [worker.submit(i) for i in range(20)]
    worker.shutdown(wait=True)
    assert [f.result() for f in futures] == list(range(1, 21))


def test_concurrent_first_submits_create_one_worker(tiny_detector):
    """Threads racing on the first submit must share one batching worker (one batch at a time)."""
    if tiny_detector._batcher is not None:  # start from a detector that has no worker yet
        tiny_detector._batcher.shutdown(wait=True)
        tiny_detector._batcher = None
    images = _images(4, seed=5)
    barrier = threading.Barrier(8)
    futures = []

    def client() -> None:
        barrier.wait()
        futures.append(tiny_detector.submit(images[0]))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    workers = [t for t in threading.enumerate() if t.name == "trtdet-batcher"]
    assert len(workers) == 1
    for future in futures:
        assert _same(future.result(timeout=30), tiny_detector(images[0]))


class FakeGpuPhases:
    """Three-phase runner with a real GPU pipeline's rules: two staging slots, decode k queued
    before launch k+1. Items are ints; the result of ``x`` is ``10 * x``. ``stage`` rejects
    negative items (a bad image), ``finish`` fails a batch holding 13 (a failed decode)."""

    def __init__(self, launch_ahead: bool = False) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, tuple[int, ...]]] = []
        self.staged_slots = 0
        self.launched: list[tuple[int, ...]] = []
        #: A decoder that queues into buffers of its own: two batches may be launched at once.
        self.launch_ahead = launch_ahead

    def session(self):
        return self.lock

    def stage(self, items):
        if any(x < 0 for x in items):
            raise ValueError(f"bad item in {items}")
        assert self.staged_slots < 2, "a third batch staged before one was launched"
        self.staged_slots += 1
        self.events.append(("stage", tuple(items)))
        return tuple(items)

    def launch(self, staged):
        assert len(self.launched) < (2 if self.launch_ahead else 1), "too many batches launched and not finished"
        self.staged_slots -= 1
        self.launched.append(staged)
        self.events.append(("launch", staged))
        return staged

    def finish(self, launched):
        assert self.launched.pop(0) == launched
        self.events.append(("finish", launched))
        if 13 in launched:
            raise RuntimeError("decode failed")
        return [10 * x for x in launched]

    def discard(self):
        self.staged_slots = 0

    def run_batch(self, items):
        """The plain path the worker falls back to, one item at a time after a failure."""
        with self.lock:
            if any(x < 0 for x in items):
                raise ValueError(f"bad item {items}")
            return [10 * x for x in items]

    def phases(self):
        from trtdet.batching import Phases

        return Phases(self.session, self.stage, self.launch, self.finish, self.discard, launch_ahead=self.launch_ahead)


def test_overlapped_worker_stages_the_next_batch_while_one_runs():
    fake = FakeGpuPhases()
    worker = BatchingWorker(fake.run_batch, max_batch=4, max_wait_ms=50, phases=fake.phases())
    with fake.lock:  # hold the "GPU" so requests pile up behind the first batch
        futures = [worker.submit(i) for i in range(12)]
    worker.shutdown(wait=True)
    assert [f.result() for f in futures] == [10 * i for i in range(12)]
    kinds = [kind for kind, _ in fake.events]
    # launch k, then stage k+1 before finish k: the overlap.
    assert any(kinds[i : i + 3] == ["launch", "stage", "finish"] for i in range(len(kinds) - 2)), kinds


def test_overlapped_worker_under_eight_threads_keeps_every_result():
    fake = FakeGpuPhases()
    worker = BatchingWorker(fake.run_batch, max_batch=16, max_wait_ms=1, phases=fake.phases())
    futures: list[list] = [[] for _ in range(8)]

    def client(k: int) -> None:
        for n in range(1000):
            futures[k].append((20 + k * 1000 + n, worker.submit(20 + k * 1000 + n)))  # no 13: no failures

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    worker.shutdown(wait=True)
    results = [(x, future.result(timeout=60)) for per in futures for x, future in per]
    assert len(results) == 8000 and all(result == 10 * x for x, result in results)
    assert sum(kind == "stage" for kind, _ in fake.events) == sum(kind == "finish" for kind, _ in fake.events)


@pytest.mark.parametrize("bad", [-1, 13], ids=["stage-fails", "finish-fails"])
def test_overlapped_worker_fails_only_the_bad_request(bad):
    fake = FakeGpuPhases()
    worker = BatchingWorker(fake.run_batch, max_batch=3, max_wait_ms=20, phases=fake.phases())
    items = [1, 2, 3, 4, bad, 6, 7, 8, 9]
    with fake.lock:
        futures = [worker.submit(x) for x in items]
    worker.shutdown(wait=True)
    for x, future in zip(items, futures, strict=True):
        if x < 0:
            with pytest.raises(ValueError, match="bad item"):
                future.result()
        else:
            assert future.result() == 10 * x  # 13 fails only batched; alone it decodes fine


def test_overlapped_worker_shutdown_resolves_or_cancels_everything():
    fake = FakeGpuPhases()
    worker = BatchingWorker(fake.run_batch, max_batch=4, max_wait_ms=1, phases=fake.phases())
    with fake.lock:
        futures = [worker.submit(i) for i in range(60)]
        worker.shutdown(wait=False, cancel_pending=True)
    worker._thread.join(10)
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures)
    assert all(f.result() == 10 * i for i, f in enumerate(futures) if not f.cancelled())


def _lone_request_latencies(worker: BatchingWorker, starts: list[float], trials: int) -> tuple[float, float]:
    """Median seconds from submit() to the model starting, and to the result, over ``trials`` lone requests."""
    import time

    to_start, to_result = [], []
    for n in range(trials):
        starts.clear()
        t0 = time.perf_counter()
        assert worker.submit(20 + n).result(timeout=10) == 10 * (20 + n)  # (the fake fails 13)
        to_result.append(time.perf_counter() - t0)
        to_start.append(starts[0] - t0)
    return float(np.median(to_start)), float(np.median(to_result))


@pytest.mark.parametrize("overlapped", [False, True], ids=["plain", "phases"])
def test_a_lone_request_is_not_held_back_for_a_batch_that_will_not_fill(overlapped):
    """Nothing queued behind it and nothing running: it goes at once (no max_wait), and its
    result comes back in about the model's own time; an explicit max_wait_ms still waits."""
    import time

    model_s = 0.005
    starts: list[float] = []

    class SlowPhases(FakeGpuPhases):
        def stage(self, items):
            starts.append(time.perf_counter())
            return super().stage(items)

        def finish(self, launched):
            time.sleep(model_s)
            return super().finish(launched)

    def slow_batch(items):
        starts.append(time.perf_counter())
        time.sleep(model_s)
        return [10 * x for x in items]

    def worker(max_wait_ms=None):
        if overlapped:
            fake = SlowPhases(launch_ahead=True)
            return BatchingWorker(fake.run_batch, max_batch=8, max_wait_ms=max_wait_ms, phases=fake.phases())
        return BatchingWorker(slow_batch, max_batch=8, max_wait_ms=max_wait_ms)

    with worker() as default:
        to_start, to_result = _lone_request_latencies(default, starts, 30)
    assert to_start < 0.0015, f"a lone request waited {to_start * 1e3:.2f} ms before running"
    assert to_result < model_s + 0.003, f"a lone request took {to_result * 1e3:.2f} ms for a {model_s * 1e3} ms model"
    with worker(max_wait_ms=30) as waiting:  # the measurement sees a wait when there is one
        to_start, _ = _lone_request_latencies(waiting, starts, 3)
    assert to_start >= 0.029


def test_under_load_batches_are_full_and_two_stay_launched_ahead():
    """With requests queued, every batch is max_batch; results of the oldest batch go out while
    the next two are launched (the GPU always has the next batch queued)."""
    fake = FakeGpuPhases(launch_ahead=True)
    in_flight_at_finish: list[int] = []
    finish = fake.finish

    def counting_finish(launched):
        in_flight_at_finish.append(len(fake.launched))
        return finish(launched)

    fake.finish = counting_finish
    worker = BatchingWorker(fake.run_batch, max_batch=8, phases=fake.phases())
    with fake.lock:  # the "GPU" busy: the first request's batch waits, 48 more queue behind it
        futures = [worker.submit(i) for i in range(20, 69)]  # (the fake fails a batch holding 13)
    worker.shutdown(wait=True)
    assert [f.result() for f in futures] == [10 * i for i in range(20, 69)]
    sizes = [len(items) for kind, items in fake.events if kind == "stage"]
    # The first batch is what had queued when the worker woke; every later one but the last is full.
    assert sum(sizes) == 49 and len(sizes) <= 7 and all(size == 8 for size in sizes[1:-1]), sizes
    # Every finish but the last found two batches launched: one being collected, one queued behind it.
    assert in_flight_at_finish[:-1] == [2] * (len(in_flight_at_finish) - 1), in_flight_at_finish


def test_the_oldest_batch_is_delivered_without_waiting_for_the_next():
    """When nothing is queued, the worker collects the oldest launched batch alone: its futures
    resolve while the batch launched after it is still running."""
    fake = FakeGpuPhases(launch_ahead=True)
    second_may_finish = threading.Event()
    finish = fake.finish

    def gated_finish(launched):
        if launched[0] >= 100:  # the second batch "runs" until the test lets it finish
            assert second_may_finish.wait(10)
        return finish(launched)

    fake.finish = gated_finish
    worker = BatchingWorker(fake.run_batch, max_batch=4, phases=fake.phases())
    with fake.lock:  # both batches formed before either runs
        first = [worker.submit(i) for i in range(4)]
        second = [worker.submit(100 + i) for i in range(4)]
    try:
        assert [f.result(timeout=10) for f in first] == [0, 10, 20, 30]
        assert not any(f.done() for f in second)
    finally:
        second_may_finish.set()
    assert [f.result(timeout=10) for f in second] == [1000, 1010, 1020, 1030]
    worker.shutdown(wait=True)
