"""Request batching: ``submit(image) -> Future`` with a worker that forms batches.

The worker takes up to ``max_batch`` queued images, waiting at most ``max_wait_ms`` for
a batch to fill, runs them as one batch and resolves each future with its own result. If a
batch fails, its images are retried one by one so only the failing image's future fails.
The queue is bounded (``max_in_flight``) so memory stays flat under load.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


class BatchingWorker(Generic[T, R]):
    """Background thread turning single submissions into batched calls of ``run_batch``."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        max_in_flight: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_in_flight)
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="trtdet-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; blocks while ``max_in_flight`` requests are already waiting."""
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit: the detector's batching worker is shut down")
        self._queue.put((item, future))
        return future

    def _collect(self, first: tuple[T, Future[R]]) -> tuple[list[tuple[T, Future[R]]], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)  # type: ignore[arg-type]
        return batch, False

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self.run_batch([item for item, _ in live])
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller's future
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            for entry in live:  # isolate the failing input(s)
                try:
                    entry[1].set_result(self.run_batch([entry[0]])[0])
                except BaseException as single_exc:  # noqa: BLE001
                    entry[1].set_exception(single_exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            entry = self._queue.get()
            if entry is _STOP:
                break
            batch, stopping = self._collect(entry)  # type: ignore[arg-type]
            self._run(batch)

    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop accepting requests; finish (or with ``cancel_pending``, cancel) queued ones."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if cancel_pending:
            while True:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is not _STOP:
                    entry[1].cancel()  # type: ignore[index]
        self._queue.put(_STOP)
        if wait:
            self._thread.join()

    def __enter__(self) -> BatchingWorker[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

