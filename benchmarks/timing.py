"""Wall time of GPU work, synchronised: what the benchmark scripts in this folder share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def time_it(fn: Callable[[Any], Any], inputs: Any, iterations: int, warmup: int = 5) -> list[float]:
    """Seconds of each of ``iterations`` calls ``fn(inputs)`` after ``warmup`` calls, the GPU drained each time."""
    import torch

    for _ in range(warmup):
        fn(inputs)
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn(inputs)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def gpu_us(fn: Callable[[], Any], runs: int = 50, warmup: int = 5) -> float:
    """Median µs of ``fn()`` between CUDA events on the current stream."""
    import statistics

    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return statistics.median(times)


def summarise(name: str, batch: int, times: list[float], baseline: float | None) -> tuple[str, dict[str, Any]]:
    """A markdown table row and the JSON record (``pipeline, batch, median_ms, min_ms, images_per_s``)
    of ``batch`` images per call taking ``times`` seconds; the last column is ``baseline / median``."""
    import statistics

    median = statistics.median(times)
    ratio = f"{baseline / median:.1f}x" if baseline else "-"
    row = f"| {name} | {batch} | {1e3 * median:.2f} | {1e3 * min(times):.2f} | {batch / median:.0f} | {ratio} |"
    record = {"pipeline": name, "batch": batch, "median_ms": 1e3 * median, "min_ms": 1e3 * min(times),
              "images_per_s": batch / median}
    return row, record


def write_results(out: Any, text: str, payload: dict[str, Any]) -> None:
    """Print the markdown ``text``; with ``out`` (a Path), write it there and ``payload`` as JSON beside it."""
    import json

    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
