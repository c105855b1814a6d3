"""The scheduler: forms batches, runs them (overlapped on the GPU) and applies the failure policy.

One ``Scheduler`` serves ``Detector.detect(many)``, ``Detector.submit`` (through
``batching.BatchingWorker``) and the ``trtdet run`` loop. Callers ``add`` items one at a time
(each with a ``tag`` of their own: an index, a future, a video frame) and get back, in the
order they were added, one ``Outcome`` per item once its batch is done; ``cut`` runs a partial
batch now (a request batcher's deadline), ``drain`` finishes everything.

Batches: ``max_batch`` runnable items, with ``add(..., run=False)`` items (an unreadable frame
that must still be reported in order) travelling with the batch they were added to.

Overlap: with ``phases`` (a GPU pipeline whose preprocessor can stage ahead), batches run as
stage(k+1), finish(k), launch(k+1), ... -- batch k+1's host copy and upload overlap batch k on
the GPU, and decode k is always queued before engine k+1, so engines that reuse their output
buffers (CUDA graphs, TensorRT) are safe. When the pipeline's decoder queues its results into
buffers of its own (``Phases.launch_ahead``) two batches stay launched: stage(k+2),
finish(k), launch(k+2) -- the GPU always has the next batch's work queued, and an upload
starts a whole batch before its batch can run. ``phases.session()`` is held
from the first launch until nothing is in flight, so no other caller's batch runs in between.

Idle split: a batch that would start on an idle pipeline (nothing in flight) has nothing
to overlap its upload with; with ``split_when_idle`` it runs as two halves, the second half's
upload overlapping the first half's work, which finishes sooner than the whole batch would
(``benchmarks/results/design_h200.md``).

Failure policy: a batch that fails (in any phase, or in ``run_batch``) is rerun one item at a
time, outside the overlap, so only the failing items fail; a batch that was merely staged
when another one failed is rerun as a batch. A batch of one that fails is not rerun.
"""

from __future__ import annotations

import collections
import inspect
import itertools
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def release_frames(error: BaseException | None) -> None:
    """Drop the local variables of the finished frames in ``error``'s tracebacks (and its causes').

    A failed item's exception travels to a future or a caller, and its traceback's frames
    (and the finished callers they link to) would keep everything their functions held -- the batch's images and input tensors, and
    the list of errors that holds the exception itself, a cycle only the garbage collector
    frees. The tracebacks still print (file, line, function); only the locals go. Frames
    still running and suspended generators are left alone.
    """
    stack, seen = [error], set()
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            _clear_finished(tb.tb_frame, seen)
            tb = tb.tb_next
        stack += [exc.__cause__, exc.__context__]


def _clear_finished(frame: Any, seen: set[int]) -> None:
    """Clear ``frame`` and the finished callers it links to (``f_back``), up to one still running."""
    while frame is not None and id(frame) not in seen:
        seen.add(id(frame))
        if not frame.f_code.co_flags & _SUSPENDABLE:
            try:
                frame.clear()
            except RuntimeError:  # still executing, and so is every caller above it
                return
        frame = frame.f_back


def _released(outcomes: list[Outcome[R]]) -> list[Outcome[R]]:
    for outcome in outcomes:
        release_frames(outcome.error)
    return outcomes


@dataclass(frozen=True)
class Phases(Generic[T, R]):
    """A batch run split in three, so batch k+1 can be staged while batch k runs.

    ``stage(items)`` prepares a batch without waiting for the device; ``launch(staged)``
    queues its work; ``finish(launched)`` waits and returns one result per item. The
    scheduler calls them as stage(k+1), finish(k), launch(k+1) (with ``launch_ahead``:
    stage(k+2), finish(k), launch(k+2)), inside one ``session()``.
    ``discard()`` drops staged batches after an error.
    """

    session: Callable[[], AbstractContextManager[Any]]
    stage: Callable[[Sequence[T]], Any]
    launch: Callable[[Any], Any]
    finish: Callable[[Any], Sequence[R]]
    discard: Callable[[], None]
    #: The pipeline lets two batches be launched and not finished (its decoder queues results
    #: into buffers of its own, two sets): batches then run stage(k+2), finish(k), launch(k+2),
    #: so the GPU gets the next batch's work before the host waits and no gap opens between them.
    launch_ahead: bool = False


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What became of one added item: its ``result``, or the ``error`` it raised.

    Both are None for an item added with ``run=False``.
    """

    tag: Any
    result: R | None = None
    error: BaseException | None = None


@dataclass
class _Batch(Generic[T]):
    tags: list[Any]
    items: list[T]
    runs: list[bool]

    def split(self) -> tuple[_Batch[T], _Batch[T]]:
        """Two batches with half the runnable items each (items not run stay with the ones before them)."""
        half = (sum(self.runs) + 1) // 2
        counts = itertools.accumulate(self.runs)
        cut = next(index for index, seen in enumerate(counts) if seen == half) + 1
        first = _Batch(self.tags[:cut], self.items[:cut], self.runs[:cut])
        return first, _Batch(self.tags[cut:], self.items[cut:], self.runs[cut:])

    def runnable(self) -> list[T]:
        return [item for item, run in zip(self.items, self.runs, strict=True) if run]

    def outcomes(self, results: Sequence[Any] | None = None, errors: Sequence[BaseException | None] | None = None):
        """One ``Outcome`` per item; ``results``/``errors`` are per runnable item."""
        count = sum(self.runs)
        results = list(results) if results is not None else [None] * count
        errors = list(errors) if errors is not None else [None] * count
        if len(results) != count or len(errors) != count:  # a pipeline bug: every item learns of it
            wrong = RuntimeError(f"the pipeline returned {len(results)} results for a batch of {count}")
            results, errors = [None] * count, [wrong] * count
        out, k = [], 0
        for tag, run in zip(self.tags, self.runs, strict=True):
            if run:
                out.append(Outcome(tag, results[k], errors[k]))
                k += 1
            else:
                out.append(Outcome(tag))
        return out


class Scheduler(Generic[T, R]):
    """Forms batches of up to ``max_batch`` items and runs them with ``run_batch`` or ``phases``.

    ``run_batch(items)`` runs one batch on its own (and is what failed batches are rerun
    with); ``phases``, when given, run batches overlapped. ``catch`` are the exceptions the
    failure policy turns into per-item errors (others propagate after the scheduler has
    released the pipeline). One thread uses a scheduler at a time; make one per caller.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int,
        phases: Phases[T, R] | None = None,
        catch: tuple[type[BaseException], ...] = (Exception,),
        split_when_idle: int = 0,
        batch_key: Callable[[T], Hashable] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        #: Items whose keys differ never share a batch: an item of another key cuts the pending
        #: batch first (the rect letterbox keys images by shape, so a batch's result per image is
        #: the result of that image alone, whatever else was queued with it).
        self.batch_key = batch_key
        self._pending_key: Hashable = None
        if split_when_idle < 0:
            raise ValueError(f"split_when_idle: expected >= 0, got {split_when_idle}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.phases = phases
        self.catch = catch
        #: With phases: a batch of at least twice this many items that would start with nothing
        #: in flight runs as two halves, so the second half's upload overlaps the first half's
        #: work instead of the whole upload preceding it (0: never split).
        self.split_when_idle = split_when_idle
        self._pending = _Batch([], [], [])
        self._held: ExitStack | None = None
        #: Launched batches not yet finished, oldest first: at most one, or two with ``launch_ahead``.
        self._in_flight: collections.deque[tuple[_Batch[T], Any]] = collections.deque()
        self._depth = 2 if phases is not None and phases.launch_ahead else 1

    @property
    def overlaps(self) -> bool:
        """Whether batches run overlapped (three phases) rather than one ``run_batch`` each."""
        return self.phases is not None

    @property
    def in_flight(self) -> bool:
        """Whether a launched batch waits to be finished (only when overlapping)."""
        return bool(self._in_flight)

    @property
    def pending(self) -> int:
        """Runnable items added and not yet sent to the pipeline."""
        return sum(self._pending.runs)

    def add(self, item: T, tag: Any = None, *, run: bool = True) -> list[Outcome[R]]:
        """Add ``item``; returns the outcomes of the batches this completed (often none).

        ``run=False`` adds an item that is not run but reported in order (``Outcome(tag)``).
        """
        done: list[Outcome[R]] = []
        if run and self.batch_key is not None:
            key = self.batch_key(item)
            if self.pending and key != self._pending_key:
                done = self.cut()
            self._pending_key = key
        self._pending.tags.append(tag)
        self._pending.items.append(item)
        self._pending.runs.append(run)
        if self.pending >= self.max_batch:
            return done + self.cut()
        return done

    def cut(self) -> list[Outcome[R]]:
        """Send the pending items as one batch now, full or not; returns what completed."""
        return _released(self._cut())

    def _cut(self) -> list[Outcome[R]]:
        batch, self._pending = self._pending, _Batch([], [], [])
        if not batch.tags:
            return []
        if not any(batch.runs):  # nothing to run: report it after whatever is in flight
            return self._finish_in_flight() + batch.outcomes()
        if self.phases is None:
            return self._run_plain(batch)
        if not self._in_flight and self.split_when_idle and sum(batch.runs) >= 2 * self.split_when_idle:
            first, second = batch.split()
            return self._submit_overlapped(first) + self._submit_overlapped(second)
        return self._submit_overlapped(batch)

    def finish_oldest(self) -> list[Outcome[R]]:
        """Wait for the oldest launched batch and return its outcomes; the later one stays launched.

        A request batcher calls it when nothing is queued to stage: the oldest batch's results go
        out as soon as they are there, not after the batch behind it. The pipeline is released
        once nothing is in flight.
        """
        phases = self.phases
        if not self._in_flight or phases is None:
            self._release()
            return []
        try:
            batch, launched = self._in_flight.popleft()
            try:
                results = phases.finish(launched)
            except self.catch as exc:
                later = self._finish_rest()
                phases.discard()
                self._release()
                return _released(self._run_each(batch, exc) + self._settle(later))
            if not self._in_flight:
                self._release()
            return _released(batch.outcomes(results))
        except BaseException:
            self.close()
            raise

    def drain(self) -> list[Outcome[R]]:
        """Run what is pending and finish what is in flight; returns their outcomes."""
        return _released(self._cut() + self._finish_in_flight())

    def close(self) -> list[Any]:
        """Abandon pending and in-flight batches and release the pipeline (after an error).

        Returns the tags of the abandoned items, so their owner can resolve them.
        """
        abandoned = list(self._pending.tags)
        self._pending = _Batch([], [], [])
        if self._in_flight:
            abandoned = [tag for batch, _ in self._in_flight for tag in batch.tags] + abandoned
            self._in_flight.clear()
            assert self.phases is not None
            self.phases.discard()
        self._release()
        return abandoned

    def __enter__(self) -> Scheduler[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ---------------------------------------------------------------------------

    def _run_plain(self, batch: _Batch[T]) -> list[Outcome[R]]:
        items = batch.runnable()
        try:
            results = self.run_batch(items)
        except self.catch as exc:
            return self._run_each(batch, exc)
        return batch.outcomes(results)

    def _run_each(self, batch: _Batch[T], exc: BaseException) -> list[Outcome[R]]:
        """After ``batch`` failed with ``exc``: rerun its items alone so only the bad ones fail."""
        items = batch.runnable()
        if len(items) == 1:
            return batch.outcomes([None], [exc])
        results: list[R | None] = []
        errors: list[BaseException | None] = []
        for item in items:
            try:
                results.append(self.run_batch([item])[0])
                errors.append(None)
            except self.catch as single_exc:
                results.append(None)
                errors.append(single_exc)
        return batch.outcomes(results, errors)

    def _hold(self) -> None:
        if self._held is None:
            assert self.phases is not None
            held = ExitStack()
            held.enter_context(self.phases.session())
            self._held = held

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _submit_overlapped(self, batch: _Batch[T]) -> list[Outcome[R]]:
        """stage(new), finish(oldest) when the pipeline is full, launch(new): returns what finished."""
        phases = self.phases
        assert phases is not None
        done: list[Outcome[R]] = []
        try:
            self._hold()
            try:
                staged = phases.stage(batch.runnable())
            except self.catch as exc:
                phases.discard()
                done += self._finish_in_flight()
                return done + self._run_each(batch, exc)
            if len(self._in_flight) >= self._depth:
                previous, launched = self._in_flight.popleft()
                try:
                    results = phases.finish(launched)
                except self.catch as exc:
                    # Finish what else runs (the session is still held for it), then rerun the
                    # failed batch one by one; the staged one only lost its slot.
                    later = self._finish_rest()
                    phases.discard()
                    self._release()
                    return self._run_each(previous, exc) + self._settle(later) + self._run_plain(batch)
                done += previous.outcomes(results)
            try:
                launched = phases.launch(staged)
            except self.catch as exc:
                phases.discard()
                done += self._finish_in_flight()
                return done + self._run_each(batch, exc)
            self._in_flight.append((batch, launched))
            return done
        except BaseException:
            self.close()
            raise

    def _finish_rest(self) -> list[tuple[_Batch[T], Sequence[R] | None, BaseException | None]]:
        """Finish every launched batch, oldest first; each batch's results or the error it raised."""
        phases = self.phases
        assert phases is not None
        finished = []
        while self._in_flight:
            batch, launched = self._in_flight.popleft()
            try:
                finished.append((batch, phases.finish(launched), None))
            except self.catch as exc:
                finished.append((batch, None, exc))
        return finished

    def _settle(self, finished: list[tuple[_Batch[T], Sequence[R] | None, BaseException | None]]) -> list[Outcome[R]]:
        """Outcomes of finished batches, rerunning one by one those that failed (session released)."""
        out: list[Outcome[R]] = []
        for batch, results, exc in finished:
            out += batch.outcomes(results) if exc is None else self._run_each(batch, exc)
        return out

    def _finish_in_flight(self) -> list[Outcome[R]]:
        """Finish the launched batches, if any, and release the pipeline."""
        if not self._in_flight:
            self._release()
            return []
        try:
            finished = self._finish_rest()
            if any(exc is not None for _, _, exc in finished):
                assert self.phases is not None
                self.phases.discard()
            self._release()
            return self._settle(finished)
        except BaseException:
            self.close()
            raise
