"""The whole pipeline as one CUDA graph (issue 26) against the same detector with it off.

Reference: the un-graphed pipeline on the same engine (the staged upload, the warp kernel, the
package in its own engine graph, the queued decode) -- boxes, scores and classes must be equal
bit for bit. Skips without a CUDA GPU.
"""

from __future__ import annotations

import itertools
import resource

import cv2
import numpy as np
import pytest

import trtdet
from tests.concurrent_submits import submit_from_threads
from trtdet.io.images import read_image

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def images(photos):
    return [read_image(photos[name]) for name in ("grace_hopper", "astronaut", "chelsea", "coffee", "motorcycle", "camera")]


def _load(model: str, batch: int = 4, **options):
    detector = trtdet.load(model, device="cuda", batch=batch, precision="fp16", backend="inductor", **options)
    assert detector.pipeline_graphs is not None, "an inductor detector with CUDA graphs has pipeline graphs"
    return detector


def _ungraphed(detector, batch):
    graphs = detector.pipeline_graphs
    graphs.enabled = False
    try:
        return detector.detect(batch)
    finally:
        graphs.enabled = True


def _assert_equal(got, want, what: str) -> None:
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"{what}, image {k}: {len(g)} detections against {len(w)}"
        assert np.array_equal(g.xyxy, w.xyxy), f"{what}, image {k}: boxes differ"
        assert np.array_equal(g.confidence, w.confidence), f"{what}, image {k}: scores differ"
        assert np.array_equal(g.class_id, w.class_id), f"{what}, image {k}: classes differ"


def _mirrored(batch):
    """The same shapes (so the same graph) with other pixels: each image flipped left to right."""
    return [np.ascontiguousarray(image[:, ::-1]) for image in batch]


@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_graphed_pipeline_equals_the_ungraphed_one_bit_for_bit(model, images):
    """Two batches of one key alternate (each image and its mirror): a replay that read stale
    staging, or gave one slot's results to the other, would give the other batch's detections."""
    # yolo square: one engine for every shape, so each case is one key (rect buckets: the next test)
    with _load(model, **({"letterbox": "square"} if model == "yolo" else {})) as detector:
        graphs = detector.pipeline_graphs
        detector(images[0])  # the first batch runs (and checks) the engine directly
        pinned = trtdet.pinned_frames(4, *images[1].shape[:2])
        pinned[0][...] = images[1]
        pinned[1][...] = images[1][:, ::-1]
        pinned[2][...] = images[1][::-1]
        pinned[3][...] = images[1][::-1, ::-1]
        cases = {
            "batch 1": ([images[0]], _mirrored([images[0]])),
            "batch 4 of mixed shapes": (images[1:5], _mirrored(images[1:5])),
            "batch 1 from pinned memory": ([pinned[0]], [pinned[1]]),
            "batch 4, two pinned": ([pinned[0], images[2], pinned[2], images[3]],
                                    [pinned[1], images[2][::-1].copy(), pinned[3], images[3][::-1].copy()]),
        }
        for name, (first, second) in cases.items():
            wants = [_ungraphed(detector, first), _ungraphed(detector, second)]
            assert sum(len(d) for d in wants[0]) > 0, f"{name}: a check on no detections proves little"
            assert any(len(a) != len(b) or not np.array_equal(a.xyxy, b.xyxy) for a, b in zip(*wants, strict=True))
            for n in range(7):  # captured on the second sighting; both slots replayed after
                _assert_equal(detector.detect([first, second][n % 2]), wants[n % 2], f"{name}, call {n}")
        assert graphs.disabled_reason is None
        assert len(graphs.cache) == len(cases)
        uploads = {key.uploads for key in graphs.cache}
        assert uploads == {True, False}
        assert 0 < graphs.nbytes < 400 << 20


def _close(got, want) -> bool:
    return (len(got) == len(want) and np.array_equal(got.class_id, want.class_id)
            and np.allclose(got.xyxy, want.xyxy, atol=0.5) and np.allclose(got.confidence, want.confidence, atol=0.01))


class _Drifting:
    """An engine call whose result depends on host state the capture bakes in (a call counter)."""

    def __init__(self, call):
        self.call = call
        self.calls = itertools.count(1)

    def __call__(self, x):
        scale = float(next(self.calls))
        return {name: value * scale for name, value in self.call(x).items()}


def test_rect_buckets_keep_their_pipeline_graphs_bit_for_bit(images):
    """yolo's default rect letterbox on a compiled backend runs a package per input shape
    (``BucketEngine``); 16:9 frames (a 384x640 bucket) still replay whole-pipeline graphs that
    equal the un-graphed pipeline bit for bit, at batch 1 and 2."""
    from trtdet.engines.buckets import BucketEngine

    frames = [cv2.resize(image, (1280, 720)) for image in images[:4]]
    with _load("yolo") as detector:
        assert isinstance(detector.engine, BucketEngine)
        graphs = detector.pipeline_graphs
        detector(frames[0])
        for batch in ([frames[1]], frames[2:4]):
            want = _ungraphed(detector, batch)
            assert sum(len(d) for d in want) > 0
            for n in range(4):
                _assert_equal(detector.detect(batch), want, f"{len(batch)} frame(s), call {n}")
        assert graphs.disabled_reason is None and len(graphs.cache) == 2
        assert {tuple(int(d) for d in entry.input.shape[-2:]) for entry in graphs.cache.values()} == {(384, 640)}


def test_a_capture_that_replays_stale_work_turns_pipeline_graphs_off(images):
    with _load("yolo", letterbox="square") as detector:
        graphs = detector.pipeline_graphs
        want = detector.detect(images[:2])
        graphs.engine_call = _Drifting(graphs.engine_call)
        detector.detect(images[:2])  # first sighting
        with pytest.warns(UserWarning, match="CUDA graphs off for this pipeline"):
            got = detector.detect(images[:2])
        assert graphs.disabled_reason is not None and not graphs.enabled and len(graphs.cache) == 0
        _assert_equal(got, want, "after the fallback")
        _assert_equal(detector.detect(images[:2]), want, "the ordinary path from then on")


def test_submit_from_eight_threads_through_pipeline_graphs(images):
    """8 threads x 1,000 submits, batches of 1..4 all through captured graphs (one shape: few keys)."""
    frames = [cv2.resize(image, (640, 480)) for image in images]
    with _load("yolo", batch=4) as detector:
        expected = [_ungraphed(detector, [frame])[0] for frame in frames]
        results = submit_from_threads(detector, frames, lambda k, n: (k + n) % len(frames))
        graphs = detector.pipeline_graphs
        assert graphs.disabled_reason is None and len(graphs.cache) >= 1
    assert len(results) == 8000
    # Batches of 2..4 run other kernels than a batch of 1 (the expectation): within float noise, not bit for bit.
    wrong = sum(not _close(got, expected[i]) for i, got in results)
    assert wrong == 0, f"{wrong} of 8000 futures got detections other than their image's"


@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_memory_stays_flat_over_a_thousand_frames(model, images):
    frame = images[0]
    with _load(model, batch=1) as detector:
        for _ in range(50):
            detector(frame)
        torch.cuda.synchronize()
        device_before = torch.cuda.memory_allocated()
        host_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(1000):
            detector(frame)
        torch.cuda.synchronize()
        assert len(detector.pipeline_graphs.cache) == 1
        assert torch.cuda.memory_allocated() == device_before
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - host_before) / 1024
        assert grown_mb < 64, f"peak host memory grew {grown_mb:.0f} MB over 1,000 frames"


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv("TRTDET_PIPELINE_GRAPHS", "0")
    with trtdet.load("yolo", device="cuda", precision="fp16", backend="inductor") as detector:
        assert detector.pipeline_graphs is None
