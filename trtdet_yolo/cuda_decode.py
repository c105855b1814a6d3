"""YOLO decode + class-aware NMS on the GPU (numba.cuda), equal to ``trtdet_yolo.decode.decode_yolo``.

Two launches per batch on the caller's stream, then one small device-to-host copy:

1. ``yolo_candidates``: one thread per (image, anchor). v8/11 head ``[B, 4 + nc, N]``:
   score = best class score (first maximum, like ``argmax``), kept when ``> conf``; v5 head
   ``[B, N, 5 + nc]``: score = best of ``class * objectness`` (float32 products), kept when
   objectness and score are ``> conf``. Kept anchors append a uint64 key
   ``(score, anchor)`` -- descending key order is the CPU's stable "score descending" order --
   and their xyxy box (float32 ``cx -/+ w/2``) and class.
2. ``yolo_nms``: one block per image bitonic-sorts its keys, keeps the best ``max_nms``
   (Ultralytics' 30000) and runs greedy NMS: each kept box suppresses, in parallel over the
   block, the later boxes of its class with IoU > ``iou`` -- IoU in float64 with every
   operation rounded as numpy rounds it, so decisions equal the CPU's -- until
   ``max_detections`` are kept. Kept boxes are mapped through the inverse letterbox
   (float64, clipped) into the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import boolean, cuda, float32, float64, int8, int32, int64, uint64
from numba.types import float16

from trtdet.cuda.device_functions import (
    block_bitonic_sort_desc,
    clip_f32,
    key_index,
    key_value,
    ordered_key,
    to_source,
)
from trtdet.cuda.launch import KernelSet, Reinterpret
from trtdet.cuda.runtime import SIMULATOR, blocks, dadd_rn, dmul_rn, fmul_rn, numba_stream
from trtdet.detections import Detections
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
from trtdet_yolo.decode import MAX_NMS_CANDIDATES, YoloDecoder

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

CANDIDATE_THREADS = 256
#: Threads of the per-image NMS block (fewer under the simulator, where each is a Python thread).
NMS_THREADS = 64 if SIMULATOR else 512
#: Candidates whose NMS runs from shared memory (16 B box + class + flag: 21 KB) and keys
#: sorted in shared memory (8 B: 16 KB); more go through global scratch. Tiny under the
#: simulator so its tests take both paths.
SHARED_CANDIDATES = 16 if SIMULATOR else 1024
SHARED_SORT = 32 if SIMULATOR else 2048
#: Per-image columns of the inverse-transform table: 6 matrix entries, source height, width.
TRANSFORM_COLUMNS = 8
#: Result row: x1, y1, x2, y2, score, class.
RESULT_COLUMNS = 6


def _yolo_candidates(pred, v8, conf, keys, boxes, classes, counts):
    """Score anchor ``a`` of image ``blockIdx.y``; append it when it passes the threshold."""
    a = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    b = cuda.blockIdx.y
    if v8:
        anchors = pred.shape[2]
        num_classes = pred.shape[1] - 4
    else:
        anchors = pred.shape[1]
        num_classes = pred.shape[2] - 5
    if a >= anchors:
        return
    if v8:
        cx = float32(pred[b, 0, a])
        cy = float32(pred[b, 1, a])
        w = float32(pred[b, 2, a])
        h = float32(pred[b, 3, a])
        best = float32(pred[b, 4, a])
        best_class = 0
        for c in range(1, num_classes):
            s = float32(pred[b, 4 + c, a])
            if s > best:
                best = s
                best_class = c
        keep = best > conf
    else:
        cx = float32(pred[b, a, 0])
        cy = float32(pred[b, a, 1])
        w = float32(pred[b, a, 2])
        h = float32(pred[b, a, 3])
        objectness = float32(pred[b, a, 4])
        best = fmul_rn(float32(pred[b, a, 5]), objectness)
        best_class = 0
        for c in range(1, num_classes):
            s = fmul_rn(float32(pred[b, a, 5 + c]), objectness)
            if s > best:
                best = s
                best_class = c
        keep = objectness > conf and best > conf
    if keep:
        slot = cuda.atomic.add(counts, b, 1)
        keys[b, slot] = ordered_key(best, a)
        half_w = w / float32(2.0)
        half_h = h / float32(2.0)
        boxes[b, a, 0] = cx - half_w
        boxes[b, a, 1] = cy - half_h
        boxes[b, a, 2] = cx + half_w
        boxes[b, a, 3] = cy + half_h
        classes[b, a] = best_class


def _yolo_nms(keys, counts, boxes, classes, iou_threshold, agnostic, max_nms, max_det, sorted_boxes, sorted_classes,
              suppressed, transforms, results):
    """Sort, class-aware (``agnostic``: across classes) greedy NMS and letterbox inversion for image ``blockIdx.x``."""
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    state = cuda.shared.array(2, int64)
    if tid == 0:
        state[0] = int64(counts[b])
    cuda.syncthreads()
    n = state[0]
    size = 1
    while size < n:
        size *= 2
    for i in range(n + tid, size, nthreads):
        keys[b, i] = uint64(0)
    cuda.syncthreads()
    sort_buffer = cuda.shared.array(SHARED_SORT, uint64)
    if size <= SHARED_SORT:  # the usual case: sort in shared memory
        for i in range(tid, size, nthreads):
            sort_buffer[i] = keys[b, i]
        cuda.syncthreads()
        block_bitonic_sort_desc(sort_buffer, size)
        for i in range(tid, size, nthreads):
            keys[b, i] = sort_buffer[i]
        cuda.syncthreads()
    else:
        block_bitonic_sort_desc(keys[b], size)
    m = n if n < max_nms else max_nms
    # The greedy loop below is serial in i: keep its data in shared memory when it fits.
    shared_boxes = cuda.shared.array((SHARED_CANDIDATES, 4), float32)
    shared_classes = cuda.shared.array(SHARED_CANDIDATES, int32)
    shared_suppressed = cuda.shared.array(SHARED_CANDIDATES, int8)
    if m <= SHARED_CANDIDATES:
        cand_boxes = shared_boxes
        cand_classes = shared_classes
        cand_suppressed = shared_suppressed
    else:
        cand_boxes = sorted_boxes[b]
        cand_classes = sorted_classes[b]
        cand_suppressed = suppressed[b]
    for i in range(tid, m, nthreads):
        a = key_index(keys[b, i])
        for j in range(4):
            cand_boxes[i, j] = boxes[b, a, j]
        cand_classes[i] = classes[b, a]
        cand_suppressed[i] = 0
    cuda.syncthreads()
    src_h = float32(transforms[b, 6])
    src_w = float32(transforms[b, 7])
    kept = int64(0)
    for i in range(m):
        if cand_suppressed[i] != 0:
            continue
        if tid == 0:
            x1, y1 = to_source(cand_boxes[i, 0], cand_boxes[i, 1], transforms, b)
            x2, y2 = to_source(cand_boxes[i, 2], cand_boxes[i, 3], transforms, b)
            results[b, kept, 0] = clip_f32(x1, src_w)
            results[b, kept, 1] = clip_f32(y1, src_h)
            results[b, kept, 2] = clip_f32(x2, src_w)
            results[b, kept, 3] = clip_f32(y2, src_h)
            results[b, kept, 4] = key_value(keys[b, i])
            results[b, kept, 5] = float32(cand_classes[i])
        kept += 1
        if kept >= max_det:
            break
        bx1 = float64(cand_boxes[i, 0])
        by1 = float64(cand_boxes[i, 1])
        bx2 = float64(cand_boxes[i, 2])
        by2 = float64(cand_boxes[i, 3])
        area = dmul_rn(bx2 - bx1, by2 - by1)
        label = cand_classes[i]
        j = i + 1 + tid
        while j < m:
            if cand_suppressed[j] == 0 and (agnostic or cand_classes[j] == label):
                ox1 = float64(cand_boxes[j, 0])
                oy1 = float64(cand_boxes[j, 1])
                ox2 = float64(cand_boxes[j, 2])
                oy2 = float64(cand_boxes[j, 3])
                iw = (bx2 if bx2 < ox2 else ox2) - (bx1 if bx1 > ox1 else ox1)
                ih = (by2 if by2 < oy2 else oy2) - (by1 if by1 > oy1 else oy1)
                if iw < 0.0:
                    iw = 0.0
                if ih < 0.0:
                    ih = 0.0
                inter = dmul_rn(iw, ih)
                union = dadd_rn(area, dmul_rn(ox2 - ox1, oy2 - oy1)) - inter
                iou = 0.0
                if union > 0.0:
                    iou = inter / (union if union > 1e-12 else 1e-12)
                if iou > iou_threshold:
                    cand_suppressed[j] = 1
            j += nthreads
        cuda.syncthreads()
    if tid == 0:
        results[b, max_det, 0] = float32(kept)
        counts[b] = 0  # ready for the next batch without a memset launch


def kernel_signatures() -> dict[str, list[tuple]]:
    """Argument types of each kernel (float32 and float16 model outputs)."""

    candidates = [
        (dtype[:, :, ::1], boolean, float32, uint64[:, ::1], float32[:, :, ::1], int32[:, ::1], int32[::1])
        for dtype in (float32, float16)
    ]
    nms = [
        (
            uint64[:, ::1], int32[::1], float32[:, :, ::1], int32[:, ::1], float64, boolean, int64, int64,
            float32[:, :, ::1], int32[:, ::1], int8[:, ::1], float64[:, ::1], float32[:, :, ::1],
        )
    ]
    return {"candidates": candidates, "nms": nms}


#: The kernels ``yolo_candidates`` (float32 and float16 outputs) and ``yolo_nms``.
KERNELS = KernelSet({"candidates": _yolo_candidates, "nms": _yolo_nms}, kernel_signatures)
#: Python sources of the kernels, for ``cuda.compile_ptx`` checks.
KERNELS_PY = KERNELS.sources


class CudaYoloDecoder(YoloDecoder):
    """``Decoder`` for Ultralytics heads on the GPU; same results as ``YoloDecoder``.

    ``outputs[name]`` is a torch CUDA tensor (float32 or float16), as every engine returns on
    ``device="cuda"``. Runs on torch's current stream (the pipeline's); the only
    synchronisation is the final copy of the ``[B, max_detections + 1, 6]`` result.
    """

    def __init__(
        self, num_classes: int, conf_threshold: float, iou_threshold: float, max_detections: int, agnostic: bool = False
    ) -> None:
        super().__init__(num_classes, conf_threshold, iou_threshold, max_detections, agnostic)

        from trtdet.cuda.runtime import torch_device

        self.torch = torch
        self.device = torch_device()
        self._shape: tuple[int, int] = (0, 0)
        self._fixed_set: Any = None
        self._warm_up()

    def _warm_up(self) -> None:
        self._candidates = [KERNELS.launcher("candidates", index) for index in (0, 1)]
        self._nms = KERNELS.launcher("nms")

    def _buffers(self, batch: int, anchors: int) -> None:
        if batch <= self._shape[0] and anchors <= self._shape[1]:
            return
        torch = self.torch
        batch, anchors = max(batch, self._shape[0]), max(anchors, self._shape[1])
        self._shape = (batch, anchors)
        capacity = 1 << max(anchors - 1, 1).bit_length()  # room for the sort's padding
        kept = min(anchors, MAX_NMS_CANDIDATES)
        dev = self.device
        pin = not SIMULATOR
        self._keys = torch.empty((batch, capacity), dtype=torch.int64, device=dev)
        self._counts = torch.zeros(batch, dtype=torch.int32, device=dev)
        self._boxes = torch.empty((batch, anchors, 4), dtype=torch.float32, device=dev)
        self._classes = torch.empty((batch, anchors), dtype=torch.int32, device=dev)
        self._sorted_boxes = torch.empty((batch, kept, 4), dtype=torch.float32, device=dev)
        self._sorted_classes = torch.empty((batch, kept), dtype=torch.int32, device=dev)
        self._suppressed = torch.empty((batch, kept), dtype=torch.int8, device=dev)
        self._transforms_dev = torch.empty((batch, TRANSFORM_COLUMNS), dtype=torch.float64, device=dev)
        rows = self.max_detections + 1
        self._results = torch.empty((batch, rows, RESULT_COLUMNS), dtype=torch.float32, device=dev)
        self._pinned = PinnedPairs(torch, pin)
        self._pinned.allocate("transforms", (batch, TRANSFORM_COLUMNS), torch.float64)
        self._pinned.allocate("results", (batch, rows, RESULT_COLUMNS), torch.float32)
        self._views = [
            Reinterpret(self._keys, np.uint64),
            self._counts,
            self._boxes,
            self._classes,
            self._sorted_boxes,
            self._sorted_classes,
            self._suppressed,
            self._transforms_dev,
            self._results,
        ]

    def _launch(self, pred: Any, batch: int, anchors: int, v8: bool, nb_stream: Any) -> None:
        """Queue both kernels on ``nb_stream`` over this decoder's buffers (transforms already on the device)."""
        keys, counts, boxes, classes, sorted_boxes, sorted_classes, suppressed, transforms_dev, results = self._views
        self._candidates[1 if pred.element_size() == 2 else 0](
            (blocks(anchors, CANDIDATE_THREADS), batch),
            CANDIDATE_THREADS,
            nb_stream,
            pred,
            v8,
            np.float32(self.conf_threshold),
            keys,
            boxes,
            classes,
            counts,
        )
        self._nms(
            batch,
            NMS_THREADS,
            nb_stream,
            keys,
            counts,
            boxes,
            classes,
            float(self.iou_threshold),
            bool(self.agnostic),
            np.int64(MAX_NMS_CANDIDATES),
            np.int64(self.max_detections),
            sorted_boxes,
            sorted_classes,
            suppressed,
            transforms_dev,
            results,
        )

    def graph_plan(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> GraphDecode:
        """This batch shape's decode on buffers of its own, capturable in a CUDA graph (``GraphDecode``).

        ``outputs`` are a direct run's (they give the shapes); ``transforms`` are written to the
        device now, once.
        """
        torch = self.torch
        if self.head is None or self.output_name is None:
            self.validate({k: tuple(v.shape) for k, v in outputs.items()}, "model output")
        assert self.head is not None and self.output_name is not None
        pred: Any = outputs[self.output_name]
        name = self.output_name
        if self.head == "e2e":
            if self._fixed_set is None:
                from trtdet_yolo.cuda_fixed_set import CudaFixedSetDecoder

                self._fixed_set = CudaFixedSetDecoder(
                    rtdetr=False, conf_threshold=self.conf_threshold, max_detections=self.max_detections
                )
            return self._fixed_set.graph_plan(name, pred, transforms)
        batch = int(pred.shape[0])
        v8 = self.head == "v8"
        anchors = int(pred.shape[2] if v8 else pred.shape[1])
        twin = plan_decoder(self, transforms, batch, {"_shape": (0, 0)}, (batch, anchors))
        max_det = self.max_detections

        def enqueue(outs: dict[str, Any]) -> None:
            twin._launch(outs[name].contiguous(), batch, anchors, v8, numba_stream(None))

        return GraphDecode(torch, twin._results, enqueue, lambda host: rows_to_detections(host, max_det), not SIMULATOR)

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]:
        return self.collect(self.queue(outputs, transforms))

    def collect(self, queued: QueuedDecode) -> list[Detections]:
        """The detections of a batch ``queue`` queued (waits for its results)."""
        return detections_from_rows(queued, self.max_detections)

    def queue(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> QueuedDecode:
        """Queue decode and NMS of a batch on torch's current stream; ``collect`` returns its detections.

        An end-to-end head (``[B, 300, 6]``) has no NMS: ``cuda_fixed_set`` decodes it.
        """
        torch = self.torch
        if self.head is None or self.output_name is None:
            self.validate({k: tuple(v.shape) for k, v in outputs.items()}, "model output")  # type: ignore[attr-defined]
        assert self.head is not None and self.output_name is not None
        pred: Any = outputs[self.output_name]
        if self.head == "e2e":
            if self._fixed_set is None:
                from trtdet_yolo.cuda_fixed_set import CudaFixedSetDecoder

                self._fixed_set = CudaFixedSetDecoder(
                    rtdetr=False, conf_threshold=self.conf_threshold, max_detections=self.max_detections
                )
            return self._fixed_set.queue(pred, transforms)
        if not pred.is_contiguous():
            pred = pred.contiguous()
        batch = int(pred.shape[0])
        if len(transforms) != batch:
            raise ValueError(f"{len(transforms)} transforms for a batch of {batch}")
        if batch == 0:
            return QueuedDecode(None, None, transforms, 0)
        v8 = self.head == "v8"
        anchors = int(pred.shape[2] if v8 else pred.shape[1])
        self._buffers(batch, anchors)
        pinned = self._pinned.take()
        transform_table(transforms, out=pinned["transforms"][:batch].numpy())
        torch_stream = None if SIMULATOR else torch.cuda.current_stream()
        self._transforms_dev[:batch].copy_(pinned["transforms"][:batch], non_blocking=True)
        self._launch(pred, batch, anchors, v8, numba_stream(torch_stream))
        host = pinned["results"][:batch]
        host.copy_(self._results[:batch], non_blocking=True)
        return QueuedDecode(host, done_event(torch, torch_stream), transforms, batch)
