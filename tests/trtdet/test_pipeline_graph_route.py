"""How the Detector routes batches to its whole-pipeline graphs (``Detector.pipeline_graphs``), on the CPU.

The fake model's detector gets what the GPU gives it -- a stream (so batches run in the three
overlapped phases), a staging preprocessor -- and pipeline graphs that answer with class 7,
so each result says which path made it. The real capture is tested on the GPU
(tests/trtdet/gpu/test_gpu_pipeline_graph.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

import trtdet
import trtdet.pipeline
from trtdet.detections import Detections
from trtdet.stage_clock import BatchClock

from .fake_model import NAME, fake_model, image

GRAPH_CLASS = 7


class _Staging:
    """The fake model's CPU preprocessor behind the two-step staging interface."""

    def __init__(self, preprocessor) -> None:
        self.inner = preprocessor
        self.discards = 0

    def __call__(self, images):
        return self.inner(images)

    def stage(self, images):
        return list(images)

    def warp(self, staged):
        return self.inner(staged)

    def discard_staged(self) -> None:
        self.discards += 1


@dataclass
class _Staged:
    images: list
    entry: SimpleNamespace


class _Graphs:
    """Pipeline graphs for batches of up to two images: one detection of class 7 per image."""

    def __init__(self, fail_finish: bool = False) -> None:
        self.fail_finish = fail_finish
        self.staged = self.launched = self.finished = self.discarded = self.closed = 0

    def stage(self, images):
        if len(images) > 2:
            return None
        self.staged += 1
        return _Staged(list(images), SimpleNamespace(input=np.zeros((len(images), 3, 8, 8), np.float32)))

    def owns(self, staged) -> bool:
        return isinstance(staged, _Staged)

    def launch(self, staged):
        self.launched += 1
        return staged

    def finish(self, launched):
        self.finished += 1
        if self.fail_finish:
            raise RuntimeError("centernet: 9999 peaks in one image exceed max_candidates=10")
        box = np.array([[0, 0, 1, 1]], np.float32)
        return [Detections(box, np.array([float(im.mean()) / 255], np.float32), np.array([GRAPH_CLASS])) for im in launched.images]

    def discard(self) -> None:
        self.discarded += 1

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def detector(tmp_path, monkeypatch):
    monkeypatch.setattr(trtdet.pipeline.Detector, "_on_stream", lambda self: contextlib.nullcontext())
    monkeypatch.setattr(trtdet.pipeline, "BatchClock", lambda stream: BatchClock(None))
    with fake_model(tmp_path), trtdet.load(NAME, backend="fake", batch=4) as found:
        found._stream = object()  # what a GPU detector has: batches run in overlapped phases
        found.preprocessor = _Staging(found.preprocessor)
        yield found


def _classes(results) -> list[int]:
    return [int(r.class_id[0]) for r in results]


def test_small_batches_go_through_the_graphs_after_the_first_batch(detector):
    graphs = detector.pipeline_graphs = _Graphs()
    first = detector(image(40))
    assert int(first.class_id[0]) == 0 and graphs.staged == 0  # the first batch checks the engine directly
    results = detector.detect([image(40), image(80)])
    assert _classes(results) == [GRAPH_CLASS] * 2 and graphs.launched == graphs.finished == 1
    assert all(r.names == detector.names and set(r.speed) == {"preprocess", "inference", "postprocess"} for r in results)
    assert detector.last_input_shape == (2, 3, 8, 8)
    assert _classes(detector.detect([image(v) for v in (10, 20, 30)])) == [0] * 3  # more than the graphs take
    detector.close()
    assert graphs.closed == 1


def test_a_graph_batch_that_fails_is_rerun_image_by_image_on_the_ordinary_path(detector):
    graphs = detector.pipeline_graphs = _Graphs(fail_finish=True)
    detector(image(40))
    results = detector.detect([image(40), image(80)])
    assert _classes(results) == [0, 0]  # each image alone through _run_batch
    assert graphs.finished == 1 and graphs.discarded >= 1  # the scheduler dropped what was staged
    want = detector.detect([image(40), image(80), image(10)])  # the ordinary path, for the numbers
    np.testing.assert_array_equal(results[1].xyxy, want[1].xyxy)
