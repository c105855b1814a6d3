"""Per-batch stage times (``BatchClock``) and the overlapped path that fills ``Result.speed``.

The GPU branch is driven here by a stand-in for ``torch.cuda.Event`` whose timestamps are
known, on the real ``Detector`` stage/launch/finish path (a CPU stand-in for the staging
preprocessor); ``tests/trtdet/gpu/test_gpu_speed.py`` runs it on a real GPU.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest

from trtdet import stage_clock
from trtdet.model import ModelSpec
from trtdet.pipeline import Detector
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.results import Result
from trtdet.stage_clock import BatchClock

from .fake_model import FakeDecoder, FakeEngine, image

torch = pytest.importorskip("torch")


class FakeEvent:
    """A CUDA event whose timestamp is the next tick of a shared clock (10 ms apart)."""

    ticks = itertools.count()
    recorded: list[FakeEvent] = []
    waited: list[FakeEvent] = []

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.at: float | None = None

    def record(self, stream) -> None:
        assert stream is not None
        self.at = 10.0 * next(FakeEvent.ticks)
        FakeEvent.recorded.append(self)

    def synchronize(self) -> None:
        FakeEvent.waited.append(self)

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.at is not None and end.at is not None
        return end.at - self.at


@pytest.fixture
def fake_events(monkeypatch):
    FakeEvent.ticks = itertools.count()
    FakeEvent.recorded, FakeEvent.waited = [], []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    return FakeEvent


def test_cpu_clock_spans_by_hand(monkeypatch):
    readings = iter([100.0, 100.5, 102.0, 102.25])
    monkeypatch.setattr(stage_clock.time, "perf_counter", lambda: next(readings))
    clock = BatchClock(host_pre=0.25, host_post=0.125)
    for _ in range(4):
        clock.mark()
    assert clock.seconds() == (0.75, 1.5, 0.375)
    assert clock.speed(3) == {"preprocess": 250.0, "inference": 500.0, "postprocess": 125.0}


def test_gpu_clock_reads_event_spans(fake_events):
    clock = BatchClock(stream=object(), host_pre=0.001)
    for _ in range(4):
        clock.mark()  # events at 0, 10, 20, 30 ms
    clock.wait_last()
    assert fake_events.waited == [clock.marks[-1]]
    assert clock.speed(2) == pytest.approx({"preprocess": 5.5, "inference": 5.0, "postprocess": 5.0})


def test_an_unfinished_clock_gives_zeros():
    assert BatchClock().speed(1) == {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}


class StagingStandIn:
    """The CPU preprocessor with ``stage``/``warp`` split as the CUDA one has it."""

    def __init__(self) -> None:
        self.core = WarpAffinePreprocessor((8, 8), border_value=0)

    def __call__(self, images):
        return self.core(images)

    def stage(self, images):
        return list(images)

    def warp(self, staged):
        return self.core(staged)

    def discard_staged(self) -> None:
        pass


class QueuingStandIn(FakeDecoder):
    def queue(self, outputs, transforms):
        return self(outputs, transforms)

    def collect(self, queued):
        return queued


@pytest.mark.parametrize("decoder", [FakeDecoder(), QueuingStandIn()], ids=["plain", "queuing"])
def test_the_overlapped_path_times_every_batch_with_events(fake_events, decoder):
    spec = ModelSpec(name="fake", class_names=("thing",), input_size=(8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     border_value=0, conf_threshold=0.0)
    preprocessor = StagingStandIn()
    detector = Detector(spec, preprocessor, FakeEngine(), decoder, batch_size=2, stream=object())
    detector._on_stream = contextlib.nullcontext  # no CUDA stream to enter on the CPU
    assert detector._can_overlap()
    alone = []
    detector._run_stages = lambda images: alone.append(images) or []  # the non-overlapped path must not run
    try:
        results = detector.detect([image(v) for v in (10, 20, 30, 40, 50)])
    finally:
        detector.close()
    assert not alone and len(results) == 5 and all(isinstance(r, Result) for r in results)
    assert [r.source for r in results] == [f"image {k}" for k in range(5)] and results[0].names == {0: "thing"}
    np.testing.assert_allclose([r.confidence[0] for r in results], [v / 255 for v in (10, 20, 30, 40, 50)], rtol=1e-5)
    assert len(fake_events.recorded) == 4 * 3  # four boundaries per batch: 2 + 2 + 1 images
    # each batch's four events tick 10 ms apart, whatever ran between batches: 10 ms per stage per
    # batch, split over its images, plus the (small, real) host time of staging and collecting
    for result, images in zip(results, [2, 2, 2, 2, 1], strict=True):
        assert result.speed["inference"] == pytest.approx(10.0 / images)
        assert 10.0 / images <= result.speed["preprocess"] < 10.0 / images + 50
        assert 10.0 / images <= result.speed["postprocess"] < 10.0 / images + 50
    assert len(fake_events.waited) == 3  # one wait per batch, on its last event
