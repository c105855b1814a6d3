"""Per-batch stage times, taken by the pipeline as it runs (overlap stays on): ``Result.speed``.

On the CPU each stage boundary is a ``time.perf_counter`` reading. On the GPU it is a CUDA
event recorded on the pipeline's stream between warp, engine and decode, read once the batch
is finished -- every event is complete by then, so reading costs no synchronisation.
Host-only work (staging a batch, building the detections) is added to the stage it belongs to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trtdet.lazy import lazy_import
from trtdet.results import STAGES

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


@dataclass
class BatchClock:
    """The four boundaries of one batch (start, after preprocess, after inference, after
    postprocess) and host seconds spent outside them (``host_pre``, ``host_post``)."""

    stream: Any = None
    host_pre: float = 0.0
    host_post: float = 0.0
    marks: list[Any] = field(default_factory=list)

    def mark(self) -> None:
        """The next boundary: now (CPU), or when the GPU reaches this point of the stream."""
        if self.stream is None:
            self.marks.append(time.perf_counter())
            return

        event = torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        self.marks.append(event)

    def wait_last(self) -> None:
        """Wait for the last boundary (GPU); used where the batch's own wait would come next anyway."""
        if self.stream is not None and self.marks:
            self.marks[-1].synchronize()

    def seconds(self) -> tuple[float, float, float]:
        """(preprocess, inference, postprocess) seconds of the whole batch; all marks must be complete."""
        if len(self.marks) != 4:
            return (0.0, 0.0, 0.0)
        if self.stream is None:
            spans = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        else:
            spans = [a.elapsed_time(b) / 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return (self.host_pre + spans[0], spans[1], spans[2] + self.host_post)

    def speed(self, images: int) -> dict[str, float]:
        """Milliseconds per image of each stage (``Result.speed``)."""
        share = 1e3 / max(images, 1)
        return {stage: max(0.0, value * share) for stage, value in zip(STAGES, self.seconds(), strict=True)}
