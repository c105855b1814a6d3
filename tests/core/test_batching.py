"""`Detector.submit` under concurrency: nothing lost, swapped or leaked across futures."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import trtdet
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
    outcomes: list[list[tuple[int, Future]]] = [[] for _ in range(8)]

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        for _ in range(per_thread):
            i = int(rng.integers(0, len(images)))
            outcomes[k].append((i, tiny_detector.submit(images[i])))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = [(i, future.result(timeout=120)) for per in outcomes for i, future in per]
    assert len(results) == 8 * per_thread
    mismatched = [i for i, detections in results if not _same(detections, expected[i])]
    assert not mismatched


def test_a_failing_image_fails_only_its_own_future(tiny_detector):
    images = _images(7, seed=2)
    futures = [tiny_detector.submit(image) for image in images[:3]]
    bad = tiny_detector.submit(np.zeros((5, 5), np.float64))  # not an HWC image: preprocessing fails
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
