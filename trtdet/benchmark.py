"""Timing a detector: per-stage and end-to-end, after warm-up, with min and median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from trtdet.pipeline import Detector


@dataclass(frozen=True)
class BenchResult:
    """Times in milliseconds per batch; throughput in images per second (from the median)."""

    batch: int
    iterations: int
    preprocess_ms_median: float
    infer_ms_median: float
    decode_ms_median: float
    total_ms_min: float
    total_ms_median: float
    images_per_second: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def benchmark(
    detector: Detector,
    images: Sequence[np.ndarray],
    batch: int,
    iterations: int,
    warmup: int = 3,
    progress: Callable[[], None] | None = None,
) -> BenchResult:
    """Run ``iterations`` batches of ``batch`` images (cycling through ``images``) and time them.

    ``progress()`` is called after each warm-up and timed batch.
    """
    tick = progress or (lambda: None)
    batch_images = [images[i % len(images)] for i in range(batch)]
    previous = detector.batch
    detector.batch = batch
    try:
        for _ in range(warmup):
            detector.detect(batch_images)
            tick()
        detector.times.clear()
        detector.record_times = True
        totals = []
        for _ in range(iterations):
            start = time.perf_counter()
            detector.detect(batch_images)
            totals.append(time.perf_counter() - start)
            tick()
    finally:
        detector.record_times = False
        detector.batch = previous
    times = detector.times
    median_total = statistics.median(totals)
    return BenchResult(
        batch=batch,
        iterations=iterations,
        preprocess_ms_median=1e3 * statistics.median(times.preprocess),
        infer_ms_median=1e3 * statistics.median(times.infer),
        decode_ms_median=1e3 * statistics.median(times.decode),
        total_ms_min=1e3 * min(totals),
        total_ms_median=1e3 * median_total,
        images_per_second=batch / median_total,
    )
