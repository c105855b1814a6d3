"""What a GPU decoder that queues its work (``trtdet.postprocess.decoder.QueuingDecoder``) shares.

Such a decoder copies each batch's transforms up and its results down through pinned host
buffers. While batch k's results wait to be collected, batch k+1 is queued into the other
buffer of a pair, so the host never writes a buffer a queued copy still reads, nor reads one
a queued copy is about to overwrite.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.detections import Detections
from trtdet.geometry import AffineTransform
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


@dataclass
class QueuedDecode:
    """A batch's decode as queued: its pinned results (valid once ``done`` has passed)."""

    host: Any
    done: Any
    transforms: Sequence[AffineTransform]
    size: int

    def wait(self) -> Any:
        """Block until the results are on the host; returns them as a numpy array."""
        if self.done is not None:
            self.done.synchronize()
        return self.host.numpy()


class PinnedPairs:
    """Named pinned host buffers, two of each, handed out alternately (``take``)."""

    def __init__(self, torch: Any, pin: bool) -> None:
        self.torch = torch
        self.pin = pin
        self._pairs: dict[str, list[Any]] = {}
        self._turn = 0

    def allocate(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self._pairs[name] = [self.torch.empty(shape, dtype=dtype, pin_memory=self.pin) for _ in range(2)]

    def take(self) -> dict[str, Any]:
        """The next set (one buffer of each name); the one after it is the set before."""
        chosen = {name: pair[self._turn] for name, pair in self._pairs.items()}
        self._turn ^= 1
        return chosen


def done_event(torch: Any, stream: Any) -> Any:
    """An event recorded on ``stream`` now (None without a stream: the simulator ran synchronously)."""
    if stream is None:
        return None
    event = torch.cuda.Event()
    event.record(stream)
    return event


def detections_from_rows(queued: QueuedDecode, max_detections: int) -> list[Detections]:
    """The detections of a queued batch whose results are rows ``[x1, y1, x2, y2, score, class]`` per
    image, with the count kept in column 0 of row ``max_detections`` (waits for the batch).

    Copies, always: the pinned buffer is reused two batches later.
    """
    if queued.size == 0:
        return []
    out = []
    for row in queued.wait():
        rows = row[: int(row[max_detections, 0])]
        out.append(Detections(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64)))
    return out


def rows_to_detections(host: np.ndarray, max_detections: int) -> list[Detections]:
    """``detections_from_rows`` on an array already on the host (copies, always)."""
    out = []
    for row in host:
        rows = row[: int(row[max_detections, 0])]
        out.append(Detections(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64)))
    return out


class GraphDecode:
    """A decoder's work for one batch shape, on buffers of its own, for a captured CUDA graph.

    The pipeline graph (``trtdet.cuda.pipeline_graph``) bakes buffer addresses into the graph, so
    the decode it captures may use no buffer the decoder could later grow, share or alternate:
    each plan holds its own device scratch, its transforms already on the device (they depend
    only on the images' shapes, which key the graph) and one pinned result buffer.
    ``launch(outputs)`` queues the kernels and the copy of the results into ``host`` on the
    current stream -- no allocation, no host work -- so it can be captured; ``collect()`` reads
    ``host`` once the caller has waited. ``poison()`` fills both result buffers with NaN (the
    self-check: a replay that skipped the decode leaves a NaN count, which ``collect`` refuses).
    """

    def __init__(self, torch: Any, results: Any, enqueue: Any, read: Any, pin: bool) -> None:
        self.results = results
        self.host = torch.empty(tuple(results.shape), dtype=results.dtype, pin_memory=pin)
        self._enqueue = enqueue
        self._read = read

    def launch(self, outputs: dict[str, Any]) -> None:
        self._enqueue(outputs)
        self.host.copy_(self.results, non_blocking=True)

    def poison(self) -> None:
        self.results.fill_(float("nan"))
        self.host.fill_(float("nan"))

    def collect(self) -> list[Detections]:
        host = self.host.numpy()
        if not np.isfinite(host[:, -1, 0]).all():
            raise RuntimeError("the decode's results were not written (its count is NaN)")
        return self._read(host)

    @property
    def nbytes(self) -> int:
        """Bytes of the result buffers (device and pinned); the plan's scratch comes on top."""
        return 2 * self.results.numel() * self.results.element_size()


def transform_table(transforms: Sequence[AffineTransform], out: np.ndarray | None = None) -> np.ndarray:
    """``[B, 8]`` float64: each image's inverse matrix (6), source height and width -- the table
    the GPU decoders read. ``out``: rows to fill in place (a ``queue``'s pinned buffer, no allocation)."""
    table = np.empty((len(transforms), 8), np.float64) if out is None else out
    for i, transform in enumerate(transforms):
        table[i, :6] = transform.inverse.reshape(6)
        table[i, 6:] = transform.src_size
    return table


def plan_decoder(decoder: Any, transforms: Sequence[AffineTransform], batch: int, reset: dict[str, Any],
                 buffers: tuple[int, ...]) -> Any:
    """A copy of a CUDA decoder for one captured graph (its ``graph_plan``): the same settings,
    ``reset`` attributes, buffers of its own (``_buffers(*buffers)``) and the batch's transforms
    written to the device once."""
    if len(transforms) != batch or batch == 0:
        raise ValueError(f"{len(transforms)} transforms for a batch of {batch}")
    twin = copy.copy(decoder)
    twin.__dict__.update(reset)
    twin._buffers(*buffers)
    twin._transforms_dev.copy_(torch.from_numpy(transform_table(transforms)).to(decoder.device))
    return twin
