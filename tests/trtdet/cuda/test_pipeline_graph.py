"""The whole-pipeline CUDA graph's host logic on the CPU: when a key is captured, which stages can
have graphs, and the fallback after a failed capture (keys: test_graph_keys.py; the LRU: tests/trtdet/test_lru.py).

The capture itself needs a GPU (tests/trtdet/gpu/test_gpu_pipeline_graph.py); the steps a graph
holds run under the simulator in tests/trtdet/cuda/simulated/test_sim_pipeline_graph.py.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from trtdet.cuda.graph_keys import GraphKey, graph_key
from trtdet.cuda.pipeline_graph import CAPTURE_AFTER, PipelineGraphs, for_pipeline
from trtdet.postprocess.filter import class_filter

torch = pytest.importorskip("torch")


def _unpinned(array: np.ndarray) -> bool:
    return False


def _image(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def _stages(decoder=None, **engine):
    preprocessor = SimpleNamespace(dtype=torch.float16, _run_kernel=lambda *a: None)
    engine_ns = SimpleNamespace(cuda_graphs=True, ungraphed_call=lambda batch: {}, **engine)
    decoder = decoder or SimpleNamespace(graph_plan=lambda outputs, transforms: None)
    return preprocessor, engine_ns, decoder


def test_which_stages_get_pipeline_graphs(monkeypatch):
    monkeypatch.delenv("TRTDET_PIPELINE_GRAPHS", raising=False)
    graphs = for_pipeline(*_stages())
    assert isinstance(graphs, PipelineGraphs) and graphs.max_batch == 4 and graphs.cache.capacity == 8
    preprocessor, engine, decoder = _stages()
    engine.cuda_graphs = False  # --no-cuda-graphs: no graphs at all
    assert for_pipeline(preprocessor, engine, decoder) is None
    assert for_pipeline(preprocessor, SimpleNamespace(cuda_graphs=True), decoder) is None  # no direct call (TensorRT)
    assert for_pipeline(preprocessor, engine.__class__(cuda_graphs=True, ungraphed_call=len), object()) is None
    assert for_pipeline(SimpleNamespace(dtype=torch.float32), *_stages()[1:]) is None  # the CPU preprocessor
    monkeypatch.setenv("TRTDET_PIPELINE_GRAPH_BATCH", "2")
    monkeypatch.setenv("TRTDET_PIPELINE_GRAPH_KEYS", "3")
    graphs = for_pipeline(*_stages())
    assert graphs is not None and graphs.max_batch == 2 and graphs.cache.capacity == 3
    monkeypatch.setenv("TRTDET_PIPELINE_GRAPHS", "0")
    assert for_pipeline(*_stages()) is None


def test_a_class_filter_keeps_the_plan_only_around_a_queuing_decoder():
    plain = SimpleNamespace(validate=None)  # no queue/collect: the filter is a plain one
    assert not hasattr(class_filter(plain, [0]), "graph_plan")

    class Queuing:
        def validate(self, shapes, source): ...
        def __call__(self, outputs, transforms): ...
        def queue(self, outputs, transforms): ...
        def collect(self, queued): ...
        def graph_plan(self, outputs, transforms):
            from trtdet.detections import Detections

            boxes = np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
            read = lambda host: [Detections(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 3]))]  # noqa: E731
            return SimpleNamespace(_read=read)

    plan = class_filter(Queuing(), [3]).graph_plan({}, [])
    (kept,) = plan._read(None)
    assert kept.class_id.tolist() == [3] and kept.xyxy.tolist() == [[0, 0, 2, 2]]


def test_a_key_is_captured_on_its_second_batch_and_a_failed_capture_turns_graphs_off(monkeypatch):
    graphs = PipelineGraphs(*_stages()[:1], lambda batch: {}, object())
    graphs._simulator = False  # the host logic only: the build below is replaced
    builds = []

    def failing_build(key, images):
        builds.append(key)
        graphs._disable("replaying the captured pipeline: the network input differs from a direct run's")
        return None

    monkeypatch.setattr(graphs, "_build", failing_build)
    frame = [_image(6, 8)]
    assert graphs.stage(frame) is None and builds == []  # first sighting: the ordinary path
    assert CAPTURE_AFTER == 2
    with pytest.warns(UserWarning, match="CUDA graphs off for this pipeline .*: replaying the captured pipeline"):
        assert graphs.stage(frame) is None
    assert len(builds) == 1 and not graphs.enabled and "network input differs" in graphs.disabled_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning, not one per batch
        assert graphs.stage(frame) is None and graphs.stage(frame) is None
    assert len(builds) == 1


def test_capture_after_counts_each_key_on_its_own():
    graphs = PipelineGraphs(*_stages()[:1], lambda batch: {}, object(), capture_after=3)
    a = GraphKey(((4, 4),), "float16", True)
    b = GraphKey(((4, 5),), "float16", True)
    assert [graphs.due(a), graphs.due(b), graphs.due(a), graphs.due(a), graphs.due(b)] == [False, False, False, True, False]


def test_the_cpu_pipeline_has_no_pipeline_graphs():
    import trtdet

    with trtdet.load("yolo", device="cpu") as detector:
        assert detector.pipeline_graphs is None


class _Event:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name = log, name

    def record(self) -> None:
        self.log.append(f"record {self.name}")

    def synchronize(self) -> None:
        self.log.append(f"wait {self.name}")


def _fake_entry(graphs: PipelineGraphs, key: GraphKey, log: list):
    """An entry whose two slots 'replay' by writing the staged pixels' sum as their detections."""
    from trtdet.cuda.pipeline_graph import Entry, _Slot
    from trtdet.detections import Detections

    entry = Entry(key, [], [0], 0, dev=torch.zeros(key.image_bytes, dtype=torch.uint8), input=torch.zeros(1))
    for name in ("A", "B"):
        host = torch.zeros(key.image_bytes, dtype=torch.uint8)
        results: dict[str, float] = {}

        def replay(host=host, results=results, name=name) -> None:
            log.append(f"replay {name}")
            results["value"] = float(host.numpy().sum())

        def collect(results=results) -> list:
            return [Detections(np.zeros((1, 4), np.float32), np.array([results["value"]], np.float32), np.zeros(1, np.int64))]

        entry.slots.append(_Slot(host, SimpleNamespace(collect=collect), SimpleNamespace(replay=replay), _Event(log, name)))
    return entry


def test_two_slots_alternate_and_a_slot_is_refilled_only_after_its_replay(monkeypatch):
    """The scheduler's order with two batches launched ahead: stage(k+2) before finish(k)."""
    graphs = PipelineGraphs(*_stages()[:1], lambda batch: {}, object(), capture_after=1)
    graphs._simulator = False
    log: list[str] = []
    key = graph_key([_image(2, 2)], "float16", 4, _unpinned)
    monkeypatch.setattr(graphs, "_build", lambda key, images: graphs.cache.put(key, _fake_entry(graphs, key, log)) or graphs.cache.get(key))
    frames = [_image(2, 2) + k for k in range(1, 5)]  # pixel sums 12, 24, 36, 48
    first = graphs.launch(graphs.stage([frames[0]]))
    second = graphs.launch(graphs.stage([frames[1]]))
    staged = graphs.stage([frames[2]])  # slot A again: waits for batch 1's replay, keeps its results
    assert log[-1] == "wait A"
    assert graphs.finish(first)[0].confidence.tolist() == [12.0]
    third = graphs.launch(staged)
    assert graphs.finish(second)[0].confidence.tolist() == [24.0]
    assert graphs.finish(third)[0].confidence.tolist() == [36.0]
    assert [entry for entry in log if not entry.startswith("wait")][:4] == ["replay A", "record A", "replay B", "record B"]
    # launching into a slot whose batch was never finished would overwrite its results
    fourth = graphs.launch(graphs.stage([frames[3]]))
    staged = graphs.stage([frames[0]])
    staged2 = graphs.stage([frames[1]])
    assert staged2 is not None and staged2.slot is fourth.slot
    graphs.launch(staged)
    with pytest.raises(RuntimeError, match="previous batch was not finished"):
        graphs.launch(staged2)
    graphs.discard()
    assert not any(slot.pending or slot.busy for slot in graphs.cache.get(key).slots)
    assert key in graphs.cache


@pytest.mark.parametrize("threads", [1, 3, 4])
def test_staging_copies_every_image_to_its_offset_on_several_threads(threads):
    from concurrent.futures import ThreadPoolExecutor

    from trtdet.cuda.pipeline_graph import PARALLEL_FILL_BYTES, _fill

    rng = np.random.default_rng(threads)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(1080, 1920, 3), (7, 5, 3), (999, 1001, 3)]]
    assert images[0].nbytes >= PARALLEL_FILL_BYTES > images[1].nbytes
    offsets = [0, images[0].size, images[0].size + images[1].size]
    host = np.zeros(sum(image.size for image in images) + 16, np.uint8)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        _fill(host, offsets, images, pool=pool, threads=threads)
    want = np.concatenate([image.reshape(-1) for image in images] + [np.zeros(16, np.uint8)])
    np.testing.assert_array_equal(host, want)
    _fill(host, offsets, images, invert=True)
    np.testing.assert_array_equal(host[: want.size - 16], 255 - want[:-16])


@pytest.mark.parametrize("threads", [1, 4])
def test_graph_staging_leaves_out_rows_the_resize_never_reads(threads):
    """The graph path copies only the rows the resize reads (as the ordinary path's staging): with
    every other row of staging garbage, cv2's resize of staging still equals its resize of the frame."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from trtdet.cuda.pipeline_graph import _fill
    from trtdet.preprocess.cuda_resize import resize_row_band

    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    band = resize_row_band(1080, 360)  # 1080p letterboxed to 640: resized to 640x360
    assert band is not None and (band[2] - band[1]) / band[0] <= 0.5
    host = rng.integers(0, 256, frame.size, dtype=np.uint8)  # stale staging
    with ThreadPoolExecutor(max_workers=threads) as pool:
        _fill(host, [0], [frame], pool=pool, threads=threads, bands=[band])
    staged = host.reshape(frame.shape)
    period, lo, hi = band
    rows = np.arange(1080) % period
    read = (rows >= lo) & (rows < hi)
    np.testing.assert_array_equal(staged[read], frame[read])
    assert not np.array_equal(staged[~read], frame[~read])  # the others really were left out
    want = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(cv2.resize(staged, (640, 360), interpolation=cv2.INTER_LINEAR), want)
