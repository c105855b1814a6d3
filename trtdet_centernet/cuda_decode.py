"""CenterNet decode on the GPU (numba.cuda): peaks, threshold, exact top-K, boxes to the source image.

Two launches per batch on the caller's stream, then one small device-to-host copy:

1. ``centernet_candidates``: one thread per (image, cell, class) of the fused
   ``[B, N, 4 + 2C]`` output; a cell is a candidate of class c when ``hm`` is the 3x3
   max-pool of ``hm`` there (the peak test, computed from the logits themselves rather than
   read from the engine's ``pool_hm``, every class independently -- not the widely copied "best class per cell, max
   seeded with class 0" shortcut) and its logit is at least ``logit_threshold(threshold)``,
   the smallest float32 logit whose reference sigmoid exceeds the threshold, so the test
   equals the CPU's ``sigmoid(hm) > threshold`` bit for bit. Candidates are appended with an
   atomic counter as uint64 keys ``(logit, class*N + position)`` that sort like the CPU order:
   logit descending, then flat index ascending.
2. ``centernet_topk``: one block per image finds the exact K-th key by an 8-bit radix
   select over the candidates (stopping early once the K-th digit's bucket is taken whole),
   gathers the K winners into shared memory, bitonic-sorts them and writes boxes
   ``((x + reg_x) -/+ w/2, (y + reg_y) -/+ h/2) * stride`` mapped through the inverse affine
   with numpy's float64 rounding, clipped to the image. It also resets the counter.

Scores are the reference's float32 sigmoid of the K logits, applied on the host to the copied
result (K values per image), so boxes, scores, classes and order equal
``trtdet_centernet.decode.decode_centernet``. More than ``max_candidates`` peaks in an image
(a pathological heatmap) makes that batch fall back to the CPU decode, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import cuda, float32, float64, int32, int64, uint64
from numba.types import float16

from trtdet.cuda.device_functions import (
    block_bitonic_sort_desc,
    clip_f32,
    key_index,
    key_value,
    ordered_key,
    to_source,
)
from trtdet.cuda.launch import KernelSet, Launcher, Reinterpret
from trtdet.cuda.runtime import SIMULATOR, blocks, fadd_rn, fmul_rn, numba_stream
from trtdet.detections import Detections
from trtdet.geometry import AffineTransform
from trtdet.lazy import lazy_import
from trtdet.postprocess import nms
from trtdet.postprocess.queued import (
    GraphDecode,
    PinnedPairs,
    QueuedDecode,
    done_event,
    plan_decoder,
    transform_table,
)
from trtdet_centernet.decode import (
    CenterNetDecoder,
    _sigmoid,
    decode_centernet,
)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

log = logging.getLogger(__name__)

#: Largest K the top-K kernel supports (its shared-memory sort buffer).
MAX_K = 1024
#: Threads of the per-image top-K block (fewer under the simulator, where each is a Python thread).
TOPK_THREADS = 64 if SIMULATOR else 512
CANDIDATE_THREADS = 256
#: Per-image columns of the inverse-transform table: 6 matrix entries, source height, width.
TRANSFORM_COLUMNS = 8
#: Result row: x1, y1, x2, y2, logit, class.
RESULT_COLUMNS = 6


def _ordered(value: np.float32) -> int:
    bits = int(np.float32(value).view(np.uint32))
    return (~bits) & 0xFFFFFFFF if bits & 0x80000000 else bits | 0x80000000


def _from_ordered(key: int) -> np.float32:
    bits = key & 0x7FFFFFFF if key & 0x80000000 else (~key) & 0xFFFFFFFF
    return np.uint32(bits).view(np.float32)


def logit_threshold(threshold: float) -> np.float32:
    """The smallest float32 logit ``x`` with ``_sigmoid(x) > threshold`` (NaN when none).

    The reference's float32 sigmoid is monotonic, so ``x >= this`` is exactly its test.
    """
    def passes(key: int) -> bool:
        with np.errstate(over="ignore"):
            return bool(_sigmoid(np.array([_from_ordered(key)], np.float32))[0] > threshold)

    lo, hi = _ordered(np.float32(-np.inf)), _ordered(np.float32(np.inf))
    if not passes(hi):
        return np.float32(np.nan)
    if passes(lo):
        return np.float32(-np.inf)
    while hi - lo > 1:  # invariant: lo fails, hi passes
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return _from_ordered(hi)


def _centernet_candidates(output, threshold_logit, width, keys, counts):
    """Append every (class, cell) peak with logit >= threshold_logit of image ``blockIdx.y``.

    The peak test reads the 3x3 neighbours' logits (``hm`` is at least each of them, i.e.
    ``hm == maxpool3x3(hm)``), only for cells over the threshold, instead of the engine's
    ``pool_hm`` channels: a compiler may compute that pooled copy with different rounding.
    """
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    b = cuda.blockIdx.y
    cells = output.shape[1]
    classes = (output.shape[2] - 4) // 2
    if j >= cells * classes:
        return
    cell = j // classes
    c = j - cell * classes
    logit = float32(output[b, cell, 4 + c])
    if not logit >= threshold_logit:
        return
    height = cells // width
    y = cell // width
    x = cell - y * width
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            ny = y + dy
            nx = x + dx
            inside = ny >= 0 and ny < height and nx >= 0 and nx < width
            if inside and float32(output[b, ny * width + nx, 4 + c]) > logit:
                return
    slot = cuda.atomic.add(counts, b, 1)
    if slot < keys.shape[1]:
        keys[b, slot] = ordered_key(logit, c * cells + cell)


def _centernet_topk(output, keys, counts, k, transforms, width, stride, results):
    """Exact top-``k`` of image ``blockIdx.x``'s candidate keys, decoded into ``results``."""
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    hist = cuda.shared.array(256, int32)
    state = cuda.shared.array(4, int64)
    chosen = cuda.shared.array(MAX_K, uint64)
    if tid == 0:
        state[3] = int64(counts[b])
    cuda.syncthreads()
    found = state[3]
    n = found if found < keys.shape[1] else int64(keys.shape[1])
    take = n if n < k else int64(k)
    prefix = uint64(0)
    mask = uint64(0)
    if n > k:
        need = int64(k)
        for step in range(8):
            shift = uint64(56 - 8 * step)
            for d in range(tid, 256, nthreads):
                hist[d] = 0
            cuda.syncthreads()
            i = tid
            while i < n:
                key = keys[b, i]
                if (key & mask) == prefix:
                    cuda.atomic.add(hist, int32((key >> shift) & uint64(255)), 1)
                i += nthreads
            cuda.syncthreads()
            if tid == 0:
                above = int64(0)
                digit = int64(255)
                bucket = int64(0)
                while digit >= 0:
                    bucket = int64(hist[digit])
                    if above + bucket >= need:
                        break
                    above += bucket
                    digit -= 1
                state[0] = digit
                state[1] = need - above
                state[2] = bucket
            cuda.syncthreads()
            digit = state[0]
            need = state[1]
            bucket = state[2]
            prefix = prefix | (uint64(digit) << shift)
            mask = mask | (uint64(255) << shift)
            cuda.syncthreads()
            if need == bucket:  # the whole bucket is in: the prefix decides
                break
    # Gather the winners: every key whose masked prefix is >= the K-th key's (all keys if n <= k).
    if tid == 0:
        state[2] = 0
    cuda.syncthreads()
    i = tid
    while i < n:
        key = keys[b, i]
        if (key & mask) >= prefix:
            chosen[cuda.atomic.add(state, 2, 1)] = key
        i += nthreads
    size = 1
    while size < take:
        size *= 2
    for i in range(take + tid, size, nthreads):
        chosen[i] = uint64(0)
    cuda.syncthreads()
    block_bitonic_sort_desc(chosen, size)
    cells = output.shape[1]
    src_h = float32(transforms[b, 6])
    src_w = float32(transforms[b, 7])
    for i in range(tid, take, nthreads):
        key = chosen[i]
        flat = key_index(key)
        c = flat // cells
        cell = flat - c * cells
        y = cell // width
        x = cell - y * width
        cx = fadd_rn(float32(x), float32(output[b, cell, 0]))
        cy = fadd_rn(float32(y), float32(output[b, cell, 1]))
        half_w = float32(output[b, cell, 2]) / float32(2.0)
        half_h = float32(output[b, cell, 3]) / float32(2.0)
        x1, y1 = to_source(fmul_rn(cx - half_w, stride), fmul_rn(cy - half_h, stride), transforms, b)
        x2, y2 = to_source(fmul_rn(cx + half_w, stride), fmul_rn(cy + half_h, stride), transforms, b)
        results[b, i, 0] = clip_f32(x1, src_w)
        results[b, i, 1] = clip_f32(y1, src_h)
        results[b, i, 2] = clip_f32(x2, src_w)
        results[b, i, 3] = clip_f32(y2, src_h)
        results[b, i, 4] = key_value(key)
        results[b, i, 5] = float32(c)
    if tid == 0:
        results[b, k, 0] = float32(take)
        results[b, k, 1] = float32(found)
        counts[b] = 0  # ready for the next batch without a memset launch


def kernel_signatures() -> dict[str, list[tuple]]:
    """Argument types of each kernel (float32 and float16 model outputs)."""

    sigs: dict[str, list[tuple]] = {"candidates": [], "topk": []}
    for dtype in (float32, float16):
        out = dtype[:, :, ::1]
        sigs["candidates"].append((out, float32, int64, uint64[:, ::1], int32[::1]))
        sigs["topk"].append(
            (out, uint64[:, ::1], int32[::1], int64, float64[:, ::1], int64, float32, float32[:, :, ::1])
        )
    return sigs


#: The kernels ``centernet_candidates`` and ``centernet_topk`` (float32 and float16 outputs each).
KERNELS = KernelSet({"candidates": _centernet_candidates, "topk": _centernet_topk}, kernel_signatures)
#: Python sources of the kernels, for ``cuda.compile_ptx`` checks.
KERNELS_PY = KERNELS.sources


def launchers(half: bool) -> tuple[Launcher, Launcher]:
    """The (candidates, top-K) launchers for float32 or float16 outputs, compiled on first use."""
    return KERNELS.launcher("candidates", int(half)), KERNELS.launcher("topk", int(half))


def launch_decode(
    output: Any,
    keys: Any,
    counts: Any,
    transforms: Any,
    results: Any,
    *,
    k: int,
    width: int,
    stride: int,
    threshold_logit: np.float32,
    stream: Any = 0,
) -> None:
    """Enqueue both kernels on ``stream`` (numba stream); arrays are torch tensors on the device.

    The batch is ``output.shape[0]``; the scratch and result arrays may have more rows.
    ``keys`` [B, capacity] int64 (read as uint64) and ``counts`` [B] int32 (zero before the
    first call; the kernel leaves them zero) are scratch; ``transforms`` [B, 8] float64 holds
    each image's inverse matrix, source height and width; ``results`` [B, k + 1, 6] float32
    receives per rank ``x1, y1, x2, y2, logit, class`` and in row ``k`` the count taken and
    the count found.
    """
    batch, cells, channels = output.shape
    classes = (channels - 4) // 2
    candidates, topk = launchers(output.element_size() == 2)
    keys = Reinterpret(keys, np.uint64)
    grid = (blocks(cells * classes, CANDIDATE_THREADS), batch)
    candidates(grid, CANDIDATE_THREADS, stream, output, np.float32(threshold_logit), np.int64(width), keys, counts)
    topk(batch, TOPK_THREADS, stream, output, keys, counts, np.int64(k), transforms, np.int64(width),
         np.float32(stride), results)


class CudaCenterNetDecoder(CenterNetDecoder):
    """``Decoder`` for CenterNet's fused output on the GPU; same results as ``CenterNetDecoder``.

    ``outputs[name]`` is a torch CUDA tensor ``[B, N, 4 + 2C]`` (float32 or float16), as
    every engine returns on ``device="cuda"``. Runs on torch's current stream (the pipeline's);
    the only synchronisation is the final copy of the ``[B, K + 1, 6]`` result.
    """

    def __init__(
        self, num_classes: int, input_size: tuple[int, int], *, max_candidates: int = 1 << 17, **settings: Any
    ) -> None:
        """``settings`` are ``CenterNetDecoder``'s (stride, k, threshold, iou_threshold, output_name, agnostic)."""
        super().__init__(num_classes, input_size, **settings)
        k, stride = self.k, self.stride
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k: expected 1..{MAX_K}, got {k}")

        from trtdet.cuda.runtime import torch_device

        self.torch = torch
        self.device = torch_device()
        self.height = self.input_size[0] // stride
        self.width = self.input_size[1] // stride
        cells = self.height * self.width
        self.capacity = int(min(max_candidates, cells * num_classes))
        self.threshold_logit = logit_threshold(self.threshold)
        self._batch = 0
        self._keys: Any = None
        self._counts: Any = None
        self._pinned: Any = None
        self._warm_up()

    def _warm_up(self) -> None:
        launchers(False)
        launchers(True)

    def _buffers(self, batch: int) -> None:
        torch = self.torch
        if batch <= self._batch:
            return
        self._batch = batch
        # torch has no general uint64; numba sees the same bytes as uint64 keys.
        self._keys = torch.empty((batch, self.capacity), dtype=torch.int64, device=self.device)
        self._counts = torch.zeros(batch, dtype=torch.int32, device=self.device)
        self._pinned = PinnedPairs(torch, pin=not SIMULATOR)
        self._pinned.allocate("transforms", (batch, TRANSFORM_COLUMNS), torch.float64)
        self._pinned.allocate("results", (batch, self.k + 1, RESULT_COLUMNS), torch.float32)
        self._transforms_dev = torch.empty((batch, TRANSFORM_COLUMNS), dtype=torch.float64, device=self.device)
        self._results = torch.empty((batch, self.k + 1, RESULT_COLUMNS), dtype=torch.float32, device=self.device)
        self._views = (self._keys, self._counts, self._transforms_dev, self._results)

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]:
        queued = self.queue(outputs, transforms)
        return self._collect(queued, outputs[self.output_name])

    def collect(self, queued: QueuedDecode) -> list[Detections]:
        """The detections of a batch ``queue`` queued (waits for its results).

        Raises ``RuntimeError`` when an image had more peaks than ``max_candidates``: the CPU
        decode it then needs reads the engine's output, which a later batch may have replaced,
        so the pipeline reruns the batch's images one by one through ``__call__``.
        """
        return self._collect(queued, None)

    def graph_plan(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> GraphDecode:
        """This batch shape's decode on buffers of its own, capturable in a CUDA graph (``GraphDecode``).

        ``outputs`` are a direct run's (they give the batch); ``transforms`` go to the device
        now, once. More peaks than ``max_candidates`` make ``collect`` raise, as ``collect``
        does, so the pipeline reruns those images through ``__call__`` (the CPU decode).
        """
        torch = self.torch
        output: Any = outputs[self.output_name]
        batch = int(output.shape[0])
        twin = plan_decoder(self, transforms, batch, {"_batch": 0}, (batch,))
        name, transforms = self.output_name, list(transforms)

        def enqueue(outs: dict[str, Any]) -> None:
            launch_decode(
                outs[name].contiguous(), *twin._views, k=twin.k, width=twin.width, stride=twin.stride,
                threshold_logit=twin.threshold_logit, stream=numba_stream(None),
            )

        def read(host: np.ndarray) -> list[Detections]:
            return twin._collect(QueuedDecode(torch.from_numpy(host), None, transforms, batch), None)

        return GraphDecode(torch, twin._results, enqueue, read, not SIMULATOR)

    def _collect(self, queued: QueuedDecode, output: Any) -> list[Detections]:
        if queued.size == 0:
            return []
        host = queued.wait()
        if output is None and np.any(host[:, self.k, 1] > self.capacity):
            raise RuntimeError(
                f"centernet: {int(host[:, self.k, 1].max())} peaks in one image exceed max_candidates={self.capacity}"
            )
        return self._detections(host, output, queued.transforms)

    def queue(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> QueuedDecode:
        """Queue the decode of a batch on torch's current stream; ``collect`` returns its detections."""
        torch = self.torch
        output: Any = outputs[self.output_name]
        cells = self.height * self.width
        if tuple(output.shape[1:]) != (cells, self.num_channels) or output.dim() != 3:
            raise ValueError(
                f"CenterNet output: expected [B, {cells}, {self.num_channels}], got {list(output.shape)}"
            )
        batch = int(output.shape[0])
        if len(transforms) != batch:
            raise ValueError(f"{len(transforms)} transforms for a batch of {batch}")
        if batch == 0:
            return QueuedDecode(None, None, transforms, 0)
        if not output.is_contiguous():
            output = output.contiguous()
        self._buffers(batch)
        pinned = self._pinned.take()
        transform_table(transforms, out=pinned["transforms"][:batch].numpy())
        torch_stream = None if SIMULATOR else torch.cuda.current_stream()
        self._transforms_dev[:batch].copy_(pinned["transforms"][:batch], non_blocking=True)
        launch_decode(
            output,
            *self._views,
            k=self.k,
            width=self.width,
            stride=self.stride,
            threshold_logit=self.threshold_logit,
            stream=numba_stream(torch_stream),
        )
        host = pinned["results"][:batch]
        host.copy_(self._results[:batch], non_blocking=True)
        return QueuedDecode(host, done_event(torch, torch_stream), transforms, batch)

    def _detections(self, host: np.ndarray, output: Any, transforms: Sequence[AffineTransform]) -> list[Detections]:
        found = host[:, self.k, 1]
        if np.any(found > self.capacity):
            log.warning(
                "centernet: %d peaks in one image exceed max_candidates=%d; decoding this batch on the CPU",
                int(found.max()),
                self.capacity,
            )
            return decode_centernet(
                output.detach().float().cpu().numpy(),
                transforms,
                stride=self.stride,
                input_size=self.input_size,
                num_classes=self.num_classes,
                k=self.k,
                threshold=self.threshold,
                iou_threshold=self.iou_threshold,
                agnostic=self.agnostic,
            )
        results = []
        for row in host:
            take = int(row[self.k, 0])
            if take == 0:
                results.append(Detections.empty())
                continue
            rows = row[:take]
            # A copy, always: ``host`` is a pinned buffer the next batch overwrites, and
            # ascontiguousarray returns a view when only one row is taken.
            boxes = rows[:, :4].copy()
            scores = _sigmoid(np.ascontiguousarray(rows[:, 4]))
            class_id = rows[:, 5].astype(np.int64)
            if self.iou_threshold is not None:
                keep = nms(boxes, scores, None if self.agnostic else class_id, self.iou_threshold)
                boxes, scores, class_id = boxes[keep], scores[keep], class_id[keep]
            results.append(Detections(boxes, scores, class_id))
        return results
