"""Many threads submitting to one detector at once: the harness the batching stress tests share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any


def submit_from_threads(detector: Any, images: Sequence[Any], pick: Callable[[int, int], int], *,
                        threads: int = 8, per_thread: int = 1000, timeout: float = 300) -> list[tuple[int, Any]]:
    """``threads`` threads each submit ``per_thread`` images to ``detector`` at once, thread ``k``'s ``n``-th
    being ``images[pick(k, n)]``; every (image index, result), once all were submitted."""
    submitted: list[list[tuple[int, Future]]] = [[] for _ in range(threads)]

    def client(k: int) -> None:
        for n in range(per_thread):
            i = pick(k, n)
            submitted[k].append((i, detector.submit(images[i])))

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [(i, future.result(timeout=timeout)) for per in submitted for i, future in per]
