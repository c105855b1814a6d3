"""GPU letterbox preprocessing: one numba.cuda launch warps and normalises a whole batch.

Geometries from ``trtdet.preprocess.letterbox``: ``rect``, ``square`` (alias ``ultralytics``)
and ``stretch`` run the resize-and-pad kernel of ``trtdet.preprocess.cuda_resize`` (cv2.resize +
copyMakeBorder bit for bit; a ``rect`` batch of one shape has its own, smaller, output size);
``letterbox="warp"``, described here, matches
``trtdet.preprocess.cpu.WarpAffinePreprocessor`` (cv2.warpAffine INTER_LINEAR, BORDER_CONSTANT) by
following the arithmetic of OpenCV 4.11-5.0's float warpAffine path on x86 (AVX2), which it equals
bit for bit; OpenCV 5.1 rounds some sample coordinates differently (one level on < 1% of values,
the bound the tests hold every version to). The inverse matrix is computed
in double and rounded to float32; per destination row ``rx = fl(fl(y*M1) + M2)``; per pixel
``sx = fma(M0, x, rx)``; ``ix = floor(sx)``, ``a = sx - ix``; per channel
``v0 = fma(a, p01 - p00, p00)``, ``v1 = fma(a, p11 - p10, p10)``, ``v = fma(b, v1 - v0, v0)``,
rounded half to even and saturated to uint8; taps outside the image read ``border_value``.
The last ``width % 16`` columns of a row go through cv2's scalar tail, which computes
``sx = fl(fma(x, M0, fl(y*M1)) + M2)`` instead (16 = its AVX2 step, ``CV2_SIMD_COLUMNS``). Then
``out = fl(fl(v * scale) + shift)`` with ``scale = 1/(255 std)``, ``shift = -mean/std``
rounded exactly like the numpy reference, so float32 outputs are identical too.

Images of any sizes travel in one device buffer (per-image metadata in front), filled from a
pinned staging buffer by host-to-device copies on a side stream (so they overlap the previous
batch's work), then one kernel launch on the caller's stream. Images already in pinned memory
(``trtdet.pinned_frames``) are uploaded from where they are, without the staging memcpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numba import cuda, float32, float64, int32, int64, uint8
from numba.types import float16

from trtdet.cuda.device_functions import store_normalized
from trtdet.cuda.launch import Launcher
from trtdet.cuda.runtime import (
    SIMULATOR,
    blocks,
    fadd_rn,
    fma_f32,
    fmul_rn,
    numba_stream,
    rint_f32,
)
from trtdet.errors import InputError
from trtdet.geometry import AffineTransform
from trtdet.io.pinned import is_pinned
from trtdet.lazy import lazy_import
from trtdet.preprocess.base import LetterboxSettings, PreprocessedBatch
from trtdet.preprocess.cuda_resize import letterbox_resize_normalize_kernel, resize_meta, resize_row_band
from trtdet.preprocess.host_copy import Piece, RowBand, copy_pieces, copy_threads, plan_pieces
from trtdet.preprocess.letterbox import (
    RESIZE_GEOMETRIES,
    Letterbox,
    batch_input_size,
    batch_transforms,
)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

#: Per-image metadata row (float64): byte offset, height, width, row stride, then M0..M5 (float32
#: values) for the warp, or ``cuda_resize.resize_meta``'s six columns for the resize-and-pad letterbox.
META_COLUMNS = 10
_META_ALIGN = 256
BLOCK = (32, 8, 1)
#: Columns per SIMD step of cv2's warpAffine (AVX2: 2 x 8 float lanes); the rest of a row
#: goes through its scalar tail, which rounds the column coordinate differently.
CV2_SIMD_COLUMNS = 16


def cv2_inverse_matrix(matrix: np.ndarray) -> np.ndarray:
    """The dst->src matrix cv2.warpAffine derives from a forward 2x3 ``matrix``, as float32.

    Same double-precision steps as OpenCV's ``warpAffine`` (without WARP_INVERSE_MAP),
    then rounded to float32 like its float kernels do.
    """
    m = [float(v) for v in np.asarray(matrix, dtype=np.float64).reshape(6)]
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m1, m3 = -m[1] * det, -m[3] * det
    b1 = -a11 * m[2] - m1 * m[5]
    b2 = -m3 * m[2] - a22 * m[5]
    return np.array([a11, m1, b1, m3, a22, b2], dtype=np.float32)


def _warp_affine_normalize(pixels, meta, out, border, s0, s1, s2, t0, t1, t2, swap_rb, vector_columns):
    """One thread per destination pixel of one image: bilinear warp, normalise, write 3 planes."""
    x, y, b = cuda.grid(3)
    height = out.shape[2]
    width = out.shape[3]
    if x >= width or y >= height or b >= out.shape[0]:
        return
    base = int64(meta[b, 0])
    src_h = int64(meta[b, 1])
    src_w = int64(meta[b, 2])
    step = int64(meta[b, 3])
    m0 = float32(meta[b, 4])
    m1 = float32(meta[b, 5])
    m2 = float32(meta[b, 6])
    m3 = float32(meta[b, 7])
    m4 = float32(meta[b, 8])
    m5 = float32(meta[b, 9])
    fx = float32(x)
    fy = float32(y)
    if x < vector_columns:  # cv2's SIMD body
        sx = fma_f32(m0, fx, fadd_rn(fmul_rn(fy, m1), m2))
        sy = fma_f32(m3, fx, fadd_rn(fmul_rn(fy, m4), m5))
    else:  # cv2's scalar tail: x*M0 + y*M1 + M2 with the first product fused
        sx = fadd_rn(fma_f32(fx, m0, fmul_rn(fy, m1)), m2)
        sy = fadd_rn(fma_f32(fx, m3, fmul_rn(fy, m4)), m5)
    fix = math.floor(sx)
    fiy = math.floor(sy)
    ax = sx - float32(fix)
    ay = sy - float32(fiy)
    ix = int64(fix)
    iy = int64(fiy)
    in_x0 = ix >= 0 and ix < src_w
    in_x1 = ix + 1 >= 0 and ix + 1 < src_w
    in_y0 = iy >= 0 and iy < src_h
    in_y1 = iy + 1 >= 0 and iy + 1 < src_h
    row0 = base + iy * step + ix * 3
    row1 = row0 + step
    for c in range(3):
        p00 = float32(pixels[row0 + c]) if in_y0 and in_x0 else border
        p01 = float32(pixels[row0 + 3 + c]) if in_y0 and in_x1 else border
        p10 = float32(pixels[row1 + c]) if in_y1 and in_x0 else border
        p11 = float32(pixels[row1 + 3 + c]) if in_y1 and in_x1 else border
        v0 = fma_f32(ax, p01 - p00, p00)
        v1 = fma_f32(ax, p11 - p10, p10)
        v = rint_f32(fma_f32(ay, v1 - v0, v0))
        if v < float32(0.0):
            v = float32(0.0)
        if v > float32(255.0):
            v = float32(255.0)
        store_normalized(out, b, y, x, c, v, swap_rb, s0, s1, s2, t0, t1, t2)


#: The kernel's Python source, for ``cuda.compile_ptx`` checks.
KERNEL_PY = _warp_affine_normalize
warp_affine_normalize_kernel = cuda.jit(_warp_affine_normalize)


def kernel_signatures() -> list[tuple]:
    """Argument types the preprocessor launches with (float32 and float16 outputs)."""

    scalars = (float32,) * 7 + (int32, int32)
    return [
        (uint8[::1], float64[:, ::1], out_type[:, :, :, ::1], *scalars) for out_type in (float32, float16)
    ]


#: Host images of at least this many bytes in all are copied into staging in pieces, each
#: uploaded as soon as it is there, so the memcpy and the DMA overlap
#: (``trtdet.preprocess.host_copy``); smaller ones (640x480 and below) are copied here and go up
#: in one transfer.
_SPLIT_COPY_BYTES = 1 << 20
#: From this many bytes on the pieces are shared by ``host_copy.copy_threads()`` threads (32 x
#: 1080p is ~200 MB); below it (one 1080p frame is 6.2 MB) the calling thread copies them alone:
#: batches of up to 4 take the whole-pipeline graph, which copies with its own threads
#: (``trtdet.cuda.pipeline_graph``), and on a 2-core host two threads copied one frame no faster
#: than one (``benchmarks/pageable_frames.py`` measures both; ``benchmarks/results/pageable_h100.md``).
_PARALLEL_COPY_BYTES = 8 << 20


class _Staging:
    """A grow-only pinned host buffer and device buffer pair, reused across batches.

    Two of them alternate, so one batch can be staged (copied and uploading) while the
    previous one is still being warped and run. ``uploaded`` marks the end of the upload
    (the host buffer may be refilled after it); ``consumed`` marks the end of the warp
    kernel that read the device buffer (the next upload into it waits for it on the GPU).
    """

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.host: Any = None
        self.dev: Any = None
        self.uploaded: Any = None
        self.consumed: Any = None
        #: Staged and not yet warped: refilling it now would overwrite that batch.
        self.pending = False

    def reserve(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when new buffers were allocated."""
        torch = self.torch
        if self.host is not None and self.host.numel() >= nbytes:
            return False
        size = max(nbytes, 1 << 20)
        size = 1 << (size - 1).bit_length()
        pin = not SIMULATOR
        self.host = torch.empty(size, dtype=torch.uint8, pin_memory=pin)
        self.dev = self.host if SIMULATOR else torch.empty(size, dtype=torch.uint8, device=self.device)
        self.uploaded = self.consumed = None
        return True

    def wait_host_free(self) -> None:
        """Block until the last upload from the host buffer has finished."""
        if self.uploaded is not None:
            self.uploaded.synchronize()


@dataclass
class StagedBatch:
    """A batch copied into staging and uploading on the preprocessor's upload stream."""

    slot: _Staging
    meta_bytes: int
    total: int
    size: int
    transforms: list[AffineTransform]


class CudaWarpAffinePreprocessor:
    """Letterbox HWC uint8 BGR images on the GPU into a ``[B, 3, H, W]`` torch CUDA tensor.

    Same constructor contract (``letterbox`` included) and output values as
    ``WarpAffinePreprocessor``; ``dtype`` may be ``torch.float16`` for half-precision engines (values rounded from the float32 result).
    Images may be numpy arrays or torch uint8 tensors (CPU or CUDA), of any sizes.

    ``preprocessor(images)`` does it all; ``warp(stage(images))`` is the same in two steps, so
    a pipeline can stage (host copy + upload on a side stream) the next batch while the GPU
    still runs the current one. At most two batches may be staged and not yet warped.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        *,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: Literal["BGR", "RGB"] = "RGB",
        border_value: int = 114,
        letterbox: Letterbox = "warp",
        dtype: Any = None,
        stride: int = 32,
    ) -> None:
        from trtdet.cuda.runtime import torch_device

        self.settings = LetterboxSettings(
            input_size, tuple(mean), tuple(std), channel_order, border_value, letterbox, stride
        )
        self.torch = torch
        self.letterbox = self.settings.letterbox
        self.stride = self.settings.stride
        self.input_size = self.settings.input_size
        self.channel_order = self.settings.channel_order
        self.border_value = self.settings.border_value
        self.dtype = torch.float32 if dtype is None else dtype
        if self.dtype not in (torch.float32, torch.float16):
            raise ValueError(f"dtype: expected torch.float32 or torch.float16, got {self.dtype}")
        # Exactly the CPU reference's float32 constants: (x / 255 - mean) / std == x * scale + shift.
        self._scale = [float(v) for v in self.settings.scale]
        self._shift = [float(v) for v in self.settings.shift]
        self.device = torch_device()
        self._staging = [_Staging(torch, self.device), _Staging(torch, self.device)]
        self._turn = 0
        self._copy_pool: Any = None
        #: Threads that fill staging from pageable images (this one included): ``TRTDET_COPY_THREADS``.
        self._copy_threads = copy_threads()
        self._split_bytes = _SPLIT_COPY_BYTES
        self._parallel_bytes = _PARALLEL_COPY_BYTES
        #: Leave out the rows the resize reads with zero weight only (``cuda_resize.resize_row_band``).
        self._skip_rows = True
        #: Uploads run here, so they overlap the previous batch's kernels on the caller's stream.
        self._upload_stream = None if SIMULATOR else torch.cuda.Stream(device=self.device)
        self._warm_up()

    @classmethod
    def from_settings(cls, settings: LetterboxSettings, dtype: Any = None) -> CudaWarpAffinePreprocessor:
        """The preprocessor ``settings`` describe, writing ``dtype`` (torch.float32 or torch.float16)."""
        return cls(settings.input_size, mean=settings.mean, std=settings.std, channel_order=settings.channel_order,
                   border_value=settings.border_value, letterbox=settings.letterbox,  # type: ignore[arg-type]
                   dtype=dtype, stride=settings.stride)

    def _warm_up(self) -> None:
        """Compile the kernel for this output dtype now, not on the first batch."""
        index = 0 if self.dtype == self.torch.float32 else 1
        kernel = letterbox_resize_normalize_kernel if self.letterbox in RESIZE_GEOMETRIES else warp_affine_normalize_kernel
        self._launcher = Launcher(kernel, kernel_signatures()[index])

    def transforms(self, images: Sequence[Any]) -> list[AffineTransform]:
        """Each image's transform; with ``rect`` all share the batch's (stride-padded) input size."""
        return batch_transforms(self.letterbox, [tuple(image.shape) for image in images], self.input_size, stride=self.stride)

    def __call__(self, images: Sequence[Any]) -> PreprocessedBatch:
        """Warp ``images`` into one batch on torch's current stream (the pipeline's)."""
        return self.warp(self.stage(images))

    def stage(self, images: Sequence[Any]) -> StagedBatch:
        """Copy ``images`` into pinned staging and start their upload; returns without waiting.

        The batch will be warped on torch's current stream; the upload runs on a side stream
        and never waits for work queued on the current stream except to reuse device memory
        that work still reads.
        """
        torch = self.torch
        for i, image in enumerate(images):
            shape = tuple(image.shape)
            dtype = str(image.dtype)
            if len(shape) != 3 or shape[2] != 3 or dtype not in ("uint8", "torch.uint8") or 0 in shape:
                raise InputError(f"image {i}", f"expected an HxWx3 uint8 BGR image, got shape {shape} {dtype}")
        batch = len(images)
        transforms = self.transforms(images)
        slot = self._staging[self._turn]
        if slot.pending:
            raise RuntimeError("two batches are already staged: warp one before staging another")
        if batch == 0:
            return StagedBatch(slot, 0, 0, 0, [])
        meta_bytes = -(-batch * META_COLUMNS * 8 // _META_ALIGN) * _META_ALIGN
        sizes = [math.prod(image.shape) for image in images]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        total = meta_bytes + int(sum(sizes))
        self._turn ^= 1
        slot.wait_host_free()
        fresh = slot.reserve(total)
        meta = slot.host[:meta_bytes].view(torch.float64)[: batch * META_COLUMNS].numpy().reshape(batch, META_COLUMNS)
        host_bytes = slot.host.numpy()
        device_images, pinned, copies, bands = [], [], [], []
        for i, (image, transform) in enumerate(zip(images, transforms, strict=True)):
            meta[i, 0] = offsets[i]
            meta[i, 1:4] = (image.shape[0], image.shape[1], image.shape[1] * 3)
            if transform.resized is not None:
                meta[i, 4:] = resize_meta(image.shape[1], image.shape[0], transform.resized, transform.pad)
            else:
                meta[i, 4:] = cv2_inverse_matrix(transform.matrix)
            start = meta_bytes + int(offsets[i])
            if hasattr(image, "is_cuda") and image.is_cuda and not SIMULATOR:
                device_images.append((start, image))
                continue
            array = image.numpy() if hasattr(image, "numpy") else image
            if not SIMULATOR and array.flags.c_contiguous and is_pinned(array):
                pinned.append((start, array))  # uploaded straight from the caller's pinned memory
                continue
            copies.append((start, host_bytes[start : start + sizes[i]].reshape(array.shape), array))
            # The resize reads some rows with zero weight only (2 of 3 for 1080 -> 360): not copied.
            resized = transform.resized
            bands.append(resize_row_band(image.shape[0], resized[0]) if resized is not None and self._skip_rows else None)
        if SIMULATOR:  # the same copy (threads, pieces), no upload: the device buffer is the host one
            self._copy_and_upload(slot, meta_bytes, copies, whole=not pinned, bands=bands)
        else:
            self._upload(slot, meta_bytes, device_images, pinned, copies, bands, self._torch_stream(), fresh)
        slot.pending = True
        return StagedBatch(slot, meta_bytes, total, batch, transforms)

    def warp(self, staged: StagedBatch) -> PreprocessedBatch:
        """Queue the warp kernel for a staged batch on torch's current stream; the output stays on the GPU."""
        torch = self.torch
        h, w = batch_input_size(staged.transforms, self.input_size)
        slot = staged.slot
        if staged.size == 0:
            return PreprocessedBatch(torch.empty((0, 3, h, w), dtype=self.dtype, device=self.device), [])
        if not slot.pending:
            raise RuntimeError("this batch was already warped or its staging was discarded")
        slot.pending = False
        if SIMULATOR:
            out = torch.empty((staged.size, 3, h, w), dtype=self.dtype)
            self._run_kernel(slot.dev, staged.meta_bytes, staged.total, staged.size, out, 0)
        else:
            stream_t = self._torch_stream()
            with torch.cuda.stream(stream_t):
                stream_t.wait_event(slot.uploaded)
                out = torch.empty((staged.size, 3, h, w), dtype=self.dtype, device=self.device)
                self._run_kernel(slot.dev, staged.meta_bytes, staged.total, staged.size, out, numba_stream(stream_t))
                slot.consumed = torch.cuda.Event()
                slot.consumed.record(stream_t)
        self._last = (slot, staged.meta_bytes, staged.total, staged.size, out)
        return PreprocessedBatch(out, staged.transforms)

    def discard_staged(self) -> None:
        """Forget batches staged but never warped (after an error between the two steps)."""
        for slot in self._staging:
            slot.pending = False

    def _copy_and_upload(
        self, slot: _Staging, meta_bytes: int, copies: list[tuple[int, np.ndarray, np.ndarray]], whole: bool = True,
        bands: list[RowBand | None] | None = None,
    ) -> None:
        """Fill pinned staging from host images and queue the uploads (metadata first).

        From ``_split_bytes`` on, the copy goes in pieces and each piece is uploaded once it is
        filled, while later ones are still being copied (``host_copy.copy_pieces``); from
        ``_parallel_bytes`` on, the copying threads share the pieces. ``bands``: per image, the
        only rows the resize kernel reads with a nonzero weight (the others are not copied).
        Smaller copies are made here, whole, and go up in one transfer (``whole``), or one per
        image when other images (pinned ones) lie between them.
        Called with the upload stream current (the simulator: no upload).
        """
        nbytes = sum(target.nbytes for _, target, _ in copies)
        if nbytes < self._split_bytes or not copies:
            for _, target, array in copies:
                np.copyto(target, array)
            if SIMULATOR:
                return
            if whole:
                end = max((start + target.nbytes for start, target, _ in copies), default=meta_bytes)
                slot.dev[:end].copy_(slot.host[:end], non_blocking=True)
                return
            slot.dev[:meta_bytes].copy_(slot.host[:meta_bytes], non_blocking=True)
            for start, target, _ in copies:
                end = start + target.nbytes
                slot.dev[start:end].copy_(slot.host[start:end], non_blocking=True)
            return
        pool = self._copy_workers() if nbytes >= self._parallel_bytes else None
        pieces = plan_pieces(copies, self._copy_threads if pool is not None else 1, bands)
        upload_meta = meta_bytes > 0 and pieces[0].offset != meta_bytes
        if upload_meta and not SIMULATOR:
            slot.dev[:meta_bytes].copy_(slot.host[:meta_bytes], non_blocking=True)
        first = pieces[0]

        def upload(piece: Piece) -> None:
            if SIMULATOR:
                return
            # The metadata right before the first piece goes up with it, in one transfer.
            start = 0 if piece is first and not upload_meta else piece.offset
            end = piece.offset + piece.nbytes
            slot.dev[start:end].copy_(slot.host[start:end], non_blocking=True)

        copy_pieces(pieces, pool, upload)

    def _copy_workers(self) -> Any:
        """The pool of copying threads besides the caller (None with one copying thread)."""
        if self._copy_threads < 2:
            return None
        if self._copy_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._copy_pool = ThreadPoolExecutor(max_workers=self._copy_threads - 1, thread_name_prefix="trtdet-stage")
        return self._copy_pool

    def _set_copy_threads(
        self, threads: int, split_bytes: int = _SPLIT_COPY_BYTES, parallel_bytes: int = _PARALLEL_COPY_BYTES,
        skip_rows: bool = True,
    ) -> None:
        """Copy with ``threads`` threads from ``parallel_bytes`` on, in pieces from ``split_bytes``
        on, leaving out unread rows when ``skip_rows`` (benchmarks and tests compare settings)."""
        if threads < 1:
            raise ValueError(f"threads: expected >= 1, got {threads}")
        if self._copy_pool is not None:
            self._copy_pool.shutdown(wait=True)
        self._copy_pool = None
        self._copy_threads = threads
        self._split_bytes = split_bytes
        self._parallel_bytes = parallel_bytes
        self._skip_rows = skip_rows

    def relaunch(self) -> Any:
        """Run only the kernel again on the batch uploaded by the last call (for benchmarks)."""
        slot, meta_bytes, total, batch, out = self._last
        self._run_kernel(slot.dev, meta_bytes, total, batch, out, numba_stream(self._torch_stream()))
        return out

    def _torch_stream(self) -> Any:
        if SIMULATOR:
            return None
        return self.torch.cuda.current_stream()

    def _upload(
        self, slot: _Staging, meta_bytes: int, device_images: list, pinned: list[tuple[int, np.ndarray]],
        copies: list[tuple[int, np.ndarray, np.ndarray]], bands: list[RowBand | None], stream: Any, fresh: bool,
    ) -> None:
        """Copy host images into staging, queue the host-to-device copies on the upload stream
        (pinned images go up directly, without the staging copy) and record ``slot.uploaded``."""
        torch = self.torch
        upload = self._upload_stream
        if fresh or device_images:
            # New device memory may be recycled from tensors ``stream``'s queued kernels still
            # use, and device images were written on ``stream``: wait for that work first.
            upload.wait_stream(stream)
        elif slot.consumed is not None:
            upload.wait_event(slot.consumed)  # the previous warp out of this slot has read it
        with torch.cuda.stream(upload):
            try:
                self._copy_and_upload(slot, meta_bytes, copies, whole=not pinned, bands=bands)
                for start, array in pinned:
                    source = torch.from_numpy(array).reshape(-1)
                    slot.dev[start : start + source.numel()].copy_(source, non_blocking=True)
                for start, image in device_images:  # device images copied across on the GPU
                    slot.dev[start : start + image.numel()].copy_(image.reshape(-1))
                    image.record_stream(upload)
            finally:
                slot.uploaded = torch.cuda.Event()
                slot.uploaded.record(upload)

    def _run_kernel(self, dev: Any, meta_bytes: int, total: int, batch: int, out: Any, stream: Any) -> None:
        torch = self.torch
        h, w = int(out.shape[2]), int(out.shape[3])
        meta = dev[:meta_bytes].view(torch.float64)[: batch * META_COLUMNS].view(batch, META_COLUMNS)
        pixels = dev[meta_bytes:total]
        grid = (blocks(w, BLOCK[0]), blocks(h, BLOCK[1]), batch)
        s, t = self._scale, self._shift
        self._launcher(
            grid,
            BLOCK,
            stream,
            pixels,
            meta,
            out,
            np.float32(self.border_value),
            np.float32(s[0]),
            np.float32(s[1]),
            np.float32(s[2]),
            np.float32(t[0]),
            np.float32(t[1]),
            np.float32(t[2]),
            np.int32(self.channel_order == "RGB"),
            np.int32(w // CV2_SIMD_COLUMNS * CV2_SIMD_COLUMNS),
        )


def staging_layout(shapes: Sequence[tuple[int, ...]], transforms: Sequence[AffineTransform]) -> tuple[np.ndarray, list[int], int]:
    """The layout ``stage`` gives a batch of images of ``shapes`` (HxWx3): the metadata rows
    (float64 ``[B, META_COLUMNS]``), each image's byte offset after the metadata, and the
    metadata's size in bytes. It depends only on the shapes (and the transforms they give),
    so a captured pipeline (``trtdet.cuda.pipeline_graph``) writes it to the device once.
    """
    batch = len(shapes)
    meta_bytes = -(-batch * META_COLUMNS * 8 // _META_ALIGN) * _META_ALIGN
    sizes = [math.prod(shape) for shape in shapes]
    offsets = [int(v) for v in np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)] if sizes else []
    meta = np.zeros((batch, META_COLUMNS), np.float64)
    for i, (shape, transform) in enumerate(zip(shapes, transforms, strict=True)):
        meta[i, 0] = offsets[i]
        meta[i, 1:4] = (shape[0], shape[1], shape[1] * 3)
        if transform.resized is not None:
            meta[i, 4:] = resize_meta(shape[1], shape[0], transform.resized, transform.pad)
        else:
            meta[i, 4:] = cv2_inverse_matrix(transform.matrix)
    return meta, offsets, meta_bytes
