"""Fixed-set decoding on the GPU (numba.cuda), equal to ``trtdet_yolo.fixed_set``.

For end-to-end YOLO ``[B, Q, 6]`` (xyxy pixels), RT-DETR ``[B, Q, 6]`` (normalised cxcywh) and
older RT-DETR ``[B, Q, 4 + nc]`` outputs (no NMS). One launch per batch on the caller's stream,
one block per image: the block's threads score the Q rows (per-class scores: best class, first
maximum like ``argmax``; else column 4, class from column 5) into shared memory, then one thread walks them in query order keeping rows with
``score > conf`` until ``max_detections`` -- Ultralytics keeps the first ones, not the best --
and maps their boxes through the inverse letterbox exactly as ``AffineTransform.boxes_to_source``
does (float64 with every product rounded; end to end clipped, RT-DETR not). RT-DETR boxes are
``cx, cy, w, h`` in 0..1: ``(cx - w/2) * W_in`` in float32, as the numpy decoder computes them.
Results: ``[B, max_detections + 1, 6]`` rows ``x1, y1, x2, y2, score, class``; row
``max_detections`` holds the count (the layout ``CudaYoloDecoder.collect`` reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import boolean, cuda, float32, float64, int32, int64
from numba.types import float16

from trtdet.cuda.device_functions import clip_f32, to_source
from trtdet.cuda.launch import Launcher
from trtdet.cuda.runtime import SIMULATOR, fadd_rn, fmul_rn, numba_stream
from trtdet.detections import Detections
from trtdet.errors import ModelError
from trtdet.geometry import AffineTransform
from trtdet.lazy import lazy_import
from trtdet.postprocess.queued import (
    GraphDecode,
    PinnedPairs,
    QueuedDecode,
    detections_from_rows,
    done_event,
    plan_decoder,
    rows_to_detections,
    transform_table,
)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

#: Rows (queries) one block holds in shared memory; Ultralytics exports 300.
MAX_ROWS = 1024
THREADS = 32 if SIMULATOR else 256
TRANSFORM_COLUMNS = 8
RESULT_COLUMNS = 6


@cuda.jit(device=True)
def _corner(center, half, size):
    """``(center + half) * size`` in float32 without contraction (``half`` signed)."""
    return fmul_rn(fadd_rn(center, half), size)


def _fixed_set_decode(pred, rtdetr, class_scores, conf, max_det, in_h, in_w, clip, transforms, results):
    """Decode image ``blockIdx.x``: score rows in parallel, keep the first passing ones in order."""
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    rows = pred.shape[1]
    cols = pred.shape[2]
    scores = cuda.shared.array(MAX_ROWS, float32)
    classes = cuda.shared.array(MAX_ROWS, int32)
    for r in range(tid, rows, cuda.blockDim.x):
        best = float32(pred[b, r, 4])
        if class_scores:
            best_class = int32(0)
            for c in range(5, cols):
                s = float32(pred[b, r, c])
                if s > best:
                    best = s
                    best_class = int32(c - 4)
        else:
            best_class = int32(float32(pred[b, r, 5]))
        scores[r] = best
        classes[r] = best_class
    cuda.syncthreads()
    if tid != 0:
        return
    src_h = float32(transforms[b, 6])
    src_w = float32(transforms[b, 7])
    kept = int64(0)
    for r in range(rows):
        if kept >= max_det:
            break
        if not scores[r] > conf:
            continue
        if rtdetr:
            cx = float32(pred[b, r, 0])
            cy = float32(pred[b, r, 1])
            hw = float32(pred[b, r, 2]) / float32(2.0)
            hh = float32(pred[b, r, 3]) / float32(2.0)
            bx1 = _corner(cx, -hw, in_w)
            by1 = _corner(cy, -hh, in_h)
            bx2 = _corner(cx, hw, in_w)
            by2 = _corner(cy, hh, in_h)
        else:
            bx1 = float32(pred[b, r, 0])
            by1 = float32(pred[b, r, 1])
            bx2 = float32(pred[b, r, 2])
            by2 = float32(pred[b, r, 3])
        x1, y1 = to_source(bx1, by1, transforms, b)
        x2, y2 = to_source(bx2, by2, transforms, b)
        if clip:
            x1 = clip_f32(x1, src_w)
            y1 = clip_f32(y1, src_h)
            x2 = clip_f32(x2, src_w)
            y2 = clip_f32(y2, src_h)
        results[b, kept, 0] = x1
        results[b, kept, 1] = y1
        results[b, kept, 2] = x2
        results[b, kept, 3] = y2
        results[b, kept, 4] = scores[r]
        results[b, kept, 5] = float32(classes[r])
        kept += 1
    results[b, max_det, 0] = float32(kept)


#: The kernel's Python source, for ``cuda.compile_ptx`` checks.
KERNEL_PY = _fixed_set_decode
fixed_set_decode = cuda.jit(_fixed_set_decode)


def kernel_signatures() -> list[tuple]:
    """Argument types (float32 and float16 model outputs)."""

    return [
        (dtype[:, :, ::1], boolean, boolean, float32, int64, float32, float32, boolean, float64[:, ::1], float32[:, :, ::1])
        for dtype in (float32, float16)
    ]


class CudaFixedSetDecoder:
    """Queue/collect GPU decoder of end-to-end YOLO (``rtdetr=False``) or RT-DETR outputs
    (``class_scores``: the older ``[B, Q, 4 + nc]`` RT-DETR layout).

    ``queue(pred, transforms)`` takes the ``[B, Q, C]`` torch CUDA tensor itself (the caller
    picked the output); ``collect`` returns one ``Detections`` per image, equal to
    ``fixed_set.decode_end2end`` / ``decode_rtdetr`` on the same numbers.
    """

    def __init__(self, *, rtdetr: bool, conf_threshold: float, max_detections: int, class_scores: bool = False) -> None:
        from trtdet.cuda.runtime import torch_device

        self.torch = torch
        self.rtdetr = bool(rtdetr)
        self.class_scores = bool(class_scores)
        self.conf_threshold = float(conf_threshold)
        self.max_detections = int(max_detections)
        self.device = torch_device()
        self._batch = 0
        self._launchers = [Launcher(fixed_set_decode, sig) for sig in kernel_signatures()]

    def _buffers(self, batch: int) -> None:
        if batch <= self._batch:
            return
        torch = self.torch
        self._batch = batch
        rows = self.max_detections + 1
        self._transforms_dev = torch.empty((batch, TRANSFORM_COLUMNS), dtype=torch.float64, device=self.device)
        self._results = torch.empty((batch, rows, RESULT_COLUMNS), dtype=torch.float32, device=self.device)
        self._pinned = PinnedPairs(torch, not SIMULATOR)
        self._pinned.allocate("transforms", (batch, TRANSFORM_COLUMNS), torch.float64)
        self._pinned.allocate("results", (batch, rows, RESULT_COLUMNS), torch.float32)

    def queue(self, pred: Any, transforms: Sequence[AffineTransform]) -> QueuedDecode:
        """Queue the decode of ``pred`` on torch's current stream; ``collect`` returns its detections."""
        torch = self.torch
        if not pred.is_contiguous():
            pred = pred.contiguous()
        batch, rows = int(pred.shape[0]), int(pred.shape[1])
        if rows > MAX_ROWS:
            raise ModelError(f"model output: {rows} rows per image, the GPU fixed-set decoder holds at most {MAX_ROWS}")
        if len(transforms) != batch:
            raise ValueError(f"{len(transforms)} transforms for a batch of {batch}")
        if batch == 0:
            return QueuedDecode(None, None, transforms, 0)
        self._buffers(batch)
        pinned = self._pinned.take()
        transform_table(transforms, out=pinned["transforms"][:batch].numpy())
        in_h, in_w = transforms[0].dst_size
        torch_stream = None if SIMULATOR else torch.cuda.current_stream()
        self._transforms_dev[:batch].copy_(pinned["transforms"][:batch], non_blocking=True)
        self._launchers[1 if pred.element_size() == 2 else 0](
            batch, THREADS, numba_stream(torch_stream),
            pred, self.rtdetr, self.class_scores, np.float32(self.conf_threshold), np.int64(self.max_detections),
            np.float32(in_h), np.float32(in_w), not self.rtdetr, self._transforms_dev, self._results,
        )
        host = pinned["results"][:batch]
        host.copy_(self._results[:batch], non_blocking=True)
        return QueuedDecode(host, done_event(torch, torch_stream), transforms, batch)

    def collect(self, queued: QueuedDecode) -> list[Detections]:
        """The detections of a batch ``queue`` queued (waits for its results)."""
        return detections_from_rows(queued, self.max_detections)

    def graph_plan(self, name: str, pred: Any, transforms: Sequence[AffineTransform]) -> GraphDecode:
        """The decode of output ``name`` for this batch shape on buffers of its own, capturable in a
        CUDA graph (``GraphDecode``); ``pred`` is a direct run's output (it gives the shape)."""
        torch = self.torch
        batch, rows = int(pred.shape[0]), int(pred.shape[1])
        if rows > MAX_ROWS:
            raise ModelError(f"model output: {rows} rows per image, the GPU fixed-set decoder holds at most {MAX_ROWS}")
        twin = plan_decoder(self, transforms, batch, {"_batch": 0}, (batch,))
        in_h, in_w = transforms[0].dst_size
        max_det = self.max_detections

        def enqueue(outs: dict[str, Any]) -> None:
            out = outs[name].contiguous()
            twin._launchers[1 if out.element_size() == 2 else 0](
                batch, THREADS, numba_stream(None),
                out, twin.rtdetr, twin.class_scores, np.float32(twin.conf_threshold), np.int64(max_det),
                np.float32(in_h), np.float32(in_w), not twin.rtdetr, twin._transforms_dev, twin._results,
            )

        return GraphDecode(torch, twin._results, enqueue, lambda host: rows_to_detections(host, max_det), not SIMULATOR)
