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
