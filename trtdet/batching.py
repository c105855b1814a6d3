"""Request batching: ``submit(image) -> Future`` with a worker that forms batches.

The worker takes up to ``max_batch`` queued images, waiting at most ``max_wait_ms`` for
a batch to fill, runs them as one batch and resolves each future with its own result. If a
batch fails, its images are retried one by one so only the failing image's future fails.
The queue is bounded (``max_in_flight``) so memory stays flat under load.

With ``phases`` (a GPU pipeline that can stage ahead), the worker overlaps batches: while
batch k runs on the GPU it takes whatever is queued and stages it as batch k+1.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


@dataclass(frozen=True)
class Phases(Generic[T, R]):
    """A batch run split in three, so batch k+1 can be staged while batch k runs.

    ``stage(items)`` prepares a batch without waiting for the device; ``launch(staged)``
    queues its work; ``finish(launched)`` waits and returns one result per item. The worker
    calls them as launch(k), stage(k+1), finish(k), inside one ``session()``. ``discard()``
    drops a staged batch after an error.
    """

    session: Callable[[], AbstractContextManager[Any]]
    stage: Callable[[Sequence[T]], Any]
    launch: Callable[[Any], Any]
    finish: Callable[[Any], Sequence[R]]
    discard: Callable[[], None]


class BatchingWorker(Generic[T, R]):
    """Background thread turning single submissions into batched calls of ``run_batch``."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        max_in_flight: int = 256,
        phases: Phases[T, R] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.phases = phases
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
        """``first`` and what arrives within ``max_wait``, up to ``max_batch``; and whether a stop came."""
        return self._fill([first], time.monotonic() + self.max_wait)

    def _poll(self) -> tuple[list[tuple[T, Future[R]]], bool]:
        """Whatever is queued right now, up to ``max_batch``, without waiting."""
        return self._fill([], time.monotonic())

    def _fill(self, batch: list[tuple[T, Future[R]]], deadline: float) -> tuple[list[tuple[T, Future[R]]], bool]:
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)  # type: ignore[arg-type]
        return batch, False

    @staticmethod
    def _start(batch: list[tuple[T, Future[R]]]) -> list[tuple[T, Future[R]]]:
        """The entries whose futures were not cancelled, now marked running."""
        return [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        live = self._start(batch)
        if not live:
            return
        try:
            results = self.run_batch([item for item, _ in live])
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller's future
            self._run_each(live, exc)
            return
        self._resolve(live, results)

    @staticmethod
    def _resolve(live: list[tuple[T, Future[R]]], results: Sequence[R]) -> None:
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)

    def _run_each(self, live: list[tuple[T, Future[R]]], exc: BaseException) -> None:
        """After a batch failed with ``exc``: rerun its items alone so only the bad ones fail."""
        if len(live) == 1:
            live[0][1].set_exception(exc)
            return
        for item, future in live:
            try:
                future.set_result(self.run_batch([item])[0])
            except BaseException as single_exc:  # noqa: BLE001
                future.set_exception(single_exc)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            entry = self._queue.get()
            if entry is _STOP:
                break
            batch, stopping = self._collect(entry)  # type: ignore[arg-type]
            if self.phases is None:
                self._run(batch)
            else:
                stopping = self._run_overlapped(batch, stopping)

    def _run_overlapped(self, batch: list[tuple[T, Future[R]]], stopping: bool) -> bool:
        """Run ``batch`` and, while each batch runs, stage the requests queued meanwhile.

        Returns whether a stop request was seen. Any failure falls back to running the
        affected batches' items one by one (``_run_each``), outside the overlap.
        """
        phases = self.phases
        assert phases is not None
        failed: list[tuple[list[tuple[T, Future[R]]], BaseException]] = []
        with phases.session():
            live = self._start(batch)
            staged = self._try_stage(live, failed)
            while staged is not None:
                try:
                    launched = phases.launch(staged)
                except BaseException as exc:  # noqa: BLE001
                    phases.discard()
                    failed.append((live, exc))
                    break
                next_live: list[tuple[T, Future[R]]] = []
                next_staged = None
                if not stopping:
                    more, stopping = self._poll()
                    next_live = self._start(more)
                    next_staged = self._try_stage(next_live, failed)
                try:
                    results = phases.finish(launched)
                except BaseException as exc:  # noqa: BLE001
                    phases.discard()
                    failed.append((live, exc))
                    if next_staged is not None:
                        failed.append((next_live, exc))
                    break
                self._resolve(live, results)
                live, staged = next_live, next_staged
        for entries, exc in failed:
            self._run_each(entries, exc)
        return stopping

    def _try_stage(self, live: list[tuple[T, Future[R]]], failed: list) -> Any:
        """Stage ``live``'s items; on failure queue them for one-by-one runs and return None."""
        if not live:
            return None
        assert self.phases is not None
        try:
            return self.phases.stage([item for item, _ in live])
        except BaseException as exc:  # noqa: BLE001
            self.phases.discard()
            failed.append((live, exc))
            return None

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

