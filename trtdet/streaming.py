"""Detection over sources frame by frame: what ``detector.stream`` and ``trtdet run`` iterate.

``detect_stream`` yields one ``Result`` per frame (``detector.stream``); ``detect_frames``
yields ``(frame, result or None)`` for callers that need the frame itself (``trtdet run``'s
sinks: the source, the video's fps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from trtdet.detections import Detections
from trtdet.errors import ModelOutputError
from trtdet.io.sources import Frame, Source, iter_frames
from trtdet.results import Result
from trtdet.scheduler import Outcome, Scheduler

#: Threads reading images ahead when the caller names none: up to 4, one per CPU core.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


class Streamable(Protocol):
    """What ``detect_stream`` needs of a detector (``trtdet.Detector`` is one): its batch size and
    a scheduler that runs its batches."""

    batch_size: int

    def scheduler(self) -> Scheduler[Any, Detections]: ...


def detect_stream(
    detector: Streamable,
    sources: Sequence[Source],
    *,
    workers: int | None = None,
    jpeg_decoder: Any = None,
) -> Iterator[Result]:
    """A ``Result`` per frame of ``sources``, in order (``detect_frames``' results, each knowing its frame:
    ``source``, ``index``, ``image``, ``error``, ``warning``); a failed frame's has ``error``, no detections."""
    names = getattr(detector, "names", {})
    frames = detect_frames(detector, sources, workers=workers, jpeg_decoder=jpeg_decoder)
    try:
        for frame, found in frames:
            yield frame_result(frame, found, names)
    finally:
        frames.close()  # the readers stop with the consumer


def frame_result(frame: Frame, found: Detections | None, names: dict[int, str]) -> Result:
    """``found`` as the ``Result`` of ``frame`` (an empty one with the frame's error when None)."""
    result = Result.of(found if found is not None else Detections.empty(), names=names)
    if isinstance(found, Result):
        result.speed, result.names = found.speed, found.names or names
    result.source, result.image, result.index = frame.name, frame.image, frame.index
    result.error, result.warning = frame.error, frame.warning
    return result


def detect_frames(
    detector: Streamable,
    sources: Sequence[Source],
    *,
    workers: int | None = None,
    jpeg_decoder: Any = None,
) -> Iterator[tuple[Frame, Detections | None]]:
    """Every frame of ``sources``, in order, with its detections (None: unreadable, or detection failed).

    Images are read ahead on ``workers`` threads (JPEGs by ``jpeg_decoder`` on the GPU when
    given). The detector's scheduler forms the batches (readable frames only; unreadable ones
    are reported in order) and retries a failed batch one by one, so a bad image fails alone
    with ``frame.error`` naming it. Outputs that contradict the model file's declared shapes
    (``ModelOutputError``) fail the whole stream: it is raised.
    """
    chunk = detector.batch if jpeg_decoder is not None else 4
    frames = iter_frames(sources, workers=workers or DEFAULT_WORKERS, jpeg_decoder=jpeg_decoder, chunk=chunk)
    with detector.scheduler() as scheduler:
        for frame in frames:
            yield from _settle(scheduler.add(frame.image, frame, run=frame.image is not None))
        yield from _settle(scheduler.drain())


def _settle(outcomes: list[Outcome]) -> Iterator[tuple[Frame, Detections | None]]:
    for outcome in outcomes:
        frame: Frame = outcome.tag
        if isinstance(outcome.error, ModelOutputError):  # the model itself is wrong: no input can succeed
            raise outcome.error
        if outcome.error is not None:  # an input the model chokes on: report, go on
            exc = outcome.error
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            frame.error = f"{frame.name}: detection failed: {message}"
            frame.image = None
        dropped = outcome.result.non_finite_dropped if outcome.result is not None else 0
        if dropped:  # the pipeline dropped them (finite_only); the record says so
            where = frame.name if frame.index is None else f"{frame.name}#{frame.index}"
            note = f"{where}: dropped {dropped} detection(s) with NaN/Inf boxes or scores (the model's output is not finite)"
            frame.warning = f"{frame.warning}; {note}" if frame.warning else note  # keep a decoding warning
        yield frame, outcome.result
