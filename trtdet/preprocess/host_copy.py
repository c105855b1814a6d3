"""Filling the pinned staging buffer from ordinary (pageable) host images, in pieces.

A 1080p frame is 6.2 MB; one thread copies it in ~0.6 ms, the largest host cost of a batch-1
call. The copy is cut into row ranges (``plan_pieces``) that several threads fill at once
(numpy's copyto releases the GIL), and each piece is handed to ``upload`` as soon as it is
complete and every piece before it is too, so the host-to-device copy of the first rows runs
while later rows are still being copied (``copy_pieces``). The calling thread copies pieces
too (it takes any piece no worker has started), so a frame never waits on a thread's wake-up.
Rows the letterbox never reads (``cuda_resize.resize_row_band``: two of every three rows of a
1080p frame resized to 640) are not copied at all.

``TRTDET_COPY_THREADS`` sets the number of copying threads (the caller included); by default
half the usable cores, 1 to 8.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from trtdet.errors import UsageError

#: Bounds of a piece's size: small enough that copy and upload overlap and the threads share
#: a single frame, large enough that the per-piece Python work (a future, an upload call) stays
#: a few percent of the piece's memcpy. A 1080p frame is 4 to 6 pieces.
MIN_PIECE_BYTES = 1 << 20
MAX_PIECE_BYTES = 8 << 20
#: Pieces per copying thread when the size allows (so the last pieces' upload is short).
PIECES_PER_THREAD = 4
ENV_THREADS = "TRTDET_COPY_THREADS"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def copy_threads() -> int:
    """How many threads copy into staging: ``TRTDET_COPY_THREADS``, else half the usable cores (1-8)."""
    value = os.environ.get(ENV_THREADS, "").strip()
    if not value:
        return max(1, min(8, usable_cores() // 2))
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if not 1 <= threads <= 64:
        raise UsageError(f"{ENV_THREADS}={value!r}: expected a whole number of threads from 1 to 64")
    return threads


#: Which rows of an image need copying: every row ``r`` with ``lo <= r % period < hi``
#: (``cuda_resize.resize_row_band``); None: all of them.
RowBand = tuple[int, int, int]


@dataclass(frozen=True)
class Piece:
    """Rows of one image: ``source`` is copied to ``target``, bytes ``[offset, offset + nbytes)`` of staging.

    With a ``period`` above 1, only the rows at ``lo <= i % period < hi`` (``i`` counted from the
    piece's first row) are copied; the others keep whatever staging held (nothing reads them).
    """

    offset: int
    nbytes: int
    target: np.ndarray
    source: np.ndarray
    period: int = 1
    lo: int = 0
    hi: int = 1

    def copy(self) -> None:
        """Copy the piece's rows (numpy releases the GIL for the memcpy)."""
        if self.period == 1:
            np.copyto(self.target, self.source)
            return
        for row in range(self.lo, self.hi):
            np.copyto(self.target[row :: self.period], self.source[row :: self.period])


def plan_pieces(
    copies: Sequence[tuple[int, np.ndarray, np.ndarray]], threads: int, bands: Sequence[RowBand | None] | None = None
) -> list[Piece]:
    """Cut ``(staging offset, target, source)`` image copies into row ranges, in staging order.

    ``target`` is the image's C-contiguous place in staging; ``source`` any array of its shape.
    ``bands[i]``, when given, names the only rows of image ``i`` that need copying (the sizes
    are then planned on the rows actually copied; a piece still uploads its whole row range).
    """
    bands = list(bands) if bands is not None else [None] * len(copies)
    share = [1.0 if band is None else (band[2] - band[1]) / band[0] for band in bands]
    nbytes = sum(target.nbytes * part for (_, target, _), part in zip(copies, share, strict=True))
    piece = min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, int(nbytes) // (PIECES_PER_THREAD * max(1, threads))))
    pieces = []
    for (start, target, source), band, part in zip(copies, bands, share, strict=True):
        period, lo, hi = band if band is not None else (1, 0, 1)
        row_bytes = max(1, target.nbytes // max(1, target.shape[0]))
        rows = max(1, int(piece / (row_bytes * part)))
        rows = max(period, rows // period * period)  # pieces start on a period, so i % period == r % period
        for first in range(0, target.shape[0], rows):
            last = min(target.shape[0], first + rows)
            pieces.append(Piece(start + first * row_bytes, (last - first) * row_bytes, target[first:last],
                                source[first:last], period, lo, hi))
    return pieces


def copy_pieces(pieces: Sequence[Piece], pool: ThreadPoolExecutor | None, upload: Callable[[Piece], None]) -> None:
    """Copy every piece (on ``pool``'s threads and this one) and call ``upload`` for each, in order,
    once it is complete.

    Without a pool the pieces are copied here one after the other, each uploaded before the next
    is copied. On any error no thread is left writing into staging when this returns.
    """
    if pool is None or len(pieces) < 2:
        for piece in pieces:
            piece.copy()
            upload(piece)
        return
    rest = pieces[1:]
    futures: list[Future[None]] = [pool.submit(piece.copy) for piece in rest]
    copied_here = [False] * len(rest)
    try:
        pieces[0].copy()
        upload(pieces[0])
        tail = len(rest)  # pieces at and after it are done or taken by this thread
        for index, (piece, future) in enumerate(zip(rest, futures, strict=True)):
            if not copied_here[index] and future.cancel():  # no worker started it: copy it here
                piece.copy()
                copied_here[index] = True
            # While a worker copies this piece, take the last pieces no worker has started.
            while not copied_here[index] and not future.done() and tail > index + 1:
                tail -= 1
                if futures[tail].cancel():
                    rest[tail].copy()
                    copied_here[tail] = True
            if not copied_here[index]:
                future.result()
            upload(piece)
    finally:
        for future in futures:  # never leave a thread writing into staging after an error
            future.cancel() or future.exception()
