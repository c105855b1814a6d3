"""Request batching: ``submit(image) -> Future`` with a worker that forms batches.

The worker takes up to ``max_batch`` queued images and hands them to a
``trtdet.scheduler.Scheduler``, which runs them and applies the one failure policy: a failed
batch is retried one by one so only the failing image's future fails. The queue is bounded
(``max_in_flight``) so memory stays flat under load.

A request that finds the pipeline idle and nothing queued behind it runs at once: it is not
held back for a batch that will not fill (``max_wait_ms``, when given, restores a wait of at
most that long for more requests to arrive before an idle pipeline starts). Under load batches
fill by themselves from what queued while the previous batch ran.

With ``phases`` (a GPU pipeline that can stage ahead), the scheduler overlaps batches: while
batch k runs on the GPU the worker takes whatever is queued and stages and launches it as batch
k+1 (two batches launched ahead when the pipeline allows it); when nothing is queued it collects
the oldest batch alone, so its results never wait for the batch launched after it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from trtdet.errors import ClosedError
from trtdet.scheduler import Outcome, Phases, Scheduler

__all__ = ["BatchingWorker", "Phases"]

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
        max_wait_ms: float | None = None,
        max_in_flight: int = 256,
        phases: Phases[T, R] | None = None,
        split_when_idle: int = 0,
        batch_key: Callable[[T], Hashable] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.phases = phases
        self.max_batch = max_batch
        if max_wait_ms is not None and max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected >= 0 or None, got {max_wait_ms}")
        self.max_wait = None if max_wait_ms is None else max_wait_ms / 1000.0
        # Whatever a batch raises is delivered to its futures, never kills the worker.
        self.scheduler: Scheduler[T, R] = Scheduler(
            run_batch, max_batch=max_batch, phases=phases, catch=(BaseException,), split_when_idle=split_when_idle,
            batch_key=batch_key,
        )
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_in_flight)
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="trtdet-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; blocks while ``max_in_flight`` requests are already waiting.

        Raises ``ClosedError`` after ``shutdown``. The check and the enqueue happen under one
        lock that ``shutdown`` takes too, so no request can land behind the stop marker
        (where no one would ever resolve its future).
        """
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise ClosedError("cannot submit: the batching worker is shut down")
            self._queue.put((item, future))
        return future

    def _fill(self, deadline: float, limit: int) -> tuple[int, bool]:
        """Add queued requests to the scheduler until ``deadline`` or ``limit`` of them.

        Returns how many were taken and whether a stop request came.
        """
        taken = 0
        while taken < limit:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return taken, True
            self._add(entry)  # type: ignore[arg-type]
            taken += 1
        return taken, False

    def _add(self, entry: tuple[T, Future[R]]) -> None:
        item, future = entry
        if future.set_running_or_notify_cancel():  # a cancelled request is dropped here
            self._deliver(self.scheduler.add(item, future))

    @staticmethod
    def _deliver(outcomes: list[Outcome[R]]) -> None:
        for outcome in outcomes:
            future: Future[R] = outcome.tag
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result)  # type: ignore[arg-type]

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - a bug or an interrupt: fail what was taken, then stop
            for tag in self.scheduler.close():
                if isinstance(tag, Future) and not tag.done():
                    tag.set_exception(ClosedError(f"the batching worker stopped: {type(exc).__name__}: {exc}"))
            raise
        finally:  # whatever ended the loop, no queued request is left unresolved
            self._cancel_queued()  # first frees a submitter blocked on a full queue (it holds the lock)
            with self._lock:
                self._closed = True
                self._cancel_queued()

    def _cancel_queued(self) -> None:
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP:
                future: Future[R] = entry[1]  # type: ignore[index]
                # cancel() alone leaves it CANCELLED without waking concurrent.futures.wait()
                # or as_completed(); notifying does (CANCELLED_AND_NOTIFIED), as executors do.
                if future.cancel():
                    future.set_running_or_notify_cancel()

    def _serve(self) -> None:
        scheduler = self.scheduler
        stopping = False
        while not stopping:
            if scheduler.in_flight:
                # Busy: whatever is queued becomes the next batch, staged and launched while the
                # GPU runs the ones before it; with nothing queued, the oldest batch's results go out.
                taken, stopping = self._fill(time.monotonic(), self.max_batch)
                self._deliver(scheduler.cut() if taken else scheduler.finish_oldest())
                continue
            entry = self._queue.get()  # idle: wait for the next request
            if entry is _STOP:
                break
            self._add(entry)  # type: ignore[arg-type]
            entry = None  # an idle worker must not keep the last request's image alive
            # The first request and what is queued behind it (what arrives within max_wait, if set).
            wait = self.max_wait if self.max_wait is not None else 0.0
            _, stopping = self._fill(time.monotonic() + wait, self.max_batch - 1)
            self._deliver(scheduler.cut())
        self._deliver(scheduler.drain())

    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop accepting requests; finish (or with ``cancel_pending``, cancel) queued ones."""
        with self._lock:
            if self._closed:
                stopped = True
            else:
                stopped, self._closed = False, True
                if cancel_pending:
                    self._cancel_queued()
                self._queue.put(_STOP)  # under the lock: nothing is queued after it
        if wait and (not stopped or self._thread.is_alive()) and threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> BatchingWorker[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

