"""``Result.speed`` on the GPU (H100): CUDA events on the pipeline's stream, batches still overlapped."""

from __future__ import annotations

import time

import cv2
import pytest

import trtdet

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

STAGES = {"preprocess", "inference", "postprocess"}


def test_speed_comes_from_cuda_events_with_the_overlap_on(photos):
    image = cv2.imread(str(photos["chelsea"]))
    with trtdet.load("yolo", device="cuda", batch=4) as detector:
        with detector.scheduler() as scheduler:
            assert detector._can_overlap() and scheduler.phases is not None
        clocks, alone = [], []
        launch, run_stages = detector._launch, detector._run_stages

        def spy_launch(staged):
            clocks.append(staged[1])
            return launch(staged)

        def spy_run_stages(images):
            alone.append(len(images))
            return run_stages(images)

        detector._launch, detector._run_stages = spy_launch, spy_run_stages
        detector.detect([image] * 8)  # warm-up
        clocks.clear()
        start = time.perf_counter()
        results = detector.detect([image] * 16)
        wall_ms = 1e3 * (time.perf_counter() - start)
    assert clocks and not alone  # every batch went stage/launch/finish: the overlap stayed on
    assert all(clock.stream is not None and len(clock.marks) == 4 for clock in clocks)  # events, all four
    assert all(isinstance(mark, torch.cuda.Event) for clock in clocks for mark in clock.marks)
    assert len(results) == 16 and all(isinstance(r, trtdet.Result) for r in results)
    for result in results:
        assert set(result.speed) == STAGES and all(v >= 0 for v in result.speed.values())
        assert result.speed["inference"] > 0 and sum(result.speed.values()) <= wall_ms
        assert "cat" in {r["label"] for r in result.to_records()}


def test_a_stream_on_the_gpu_gives_results_with_speed(photos):
    with trtdet.load("yolo", device="cuda", batch=2) as detector:
        found = list(detector.stream([str(photos["chelsea"]), str(photos["coffee"])]))
    assert [r.source for r in found] == [str(photos["chelsea"]), str(photos["coffee"])]
    assert all(set(r.speed) == STAGES and r.speed["inference"] > 0 for r in found)
