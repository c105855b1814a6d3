"""DCNv2 (modulated deformable convolution) forward on the GPU: numba.cuda im2col + one cuBLAS GEMM.

The compute of the DCNv2 TensorRT plugin and of the torch CUDA path, in FP32 and FP16, for any
stride / padding / dilation, ``deformable_groups >= 1`` and a mask. Same formulation as the
original DCNv2 CUDA code and torchvision: ``deform_im2col`` (a numba kernel, one thread per
column row, image and output cell) writes the mask-weighted bilinear sample of x at
``(ho*sh - ph + i*dh + dy, wo*sw - pw + j*dw + dx)`` into ``cols[c*K + k, b, ho*Wo + wo]``
(zero outside the image, per corner, as torchvision) and pre-fills the accumulator with the
bias; then ``acc[Cout, n*L] += weight.view(Cout, C*K) @ cols[C*K, n*L]`` is one GEMM for a
whole chunk of images (torch ``addmm_`` on the same stream: cuBLAS, tensor cores in FP16),
and for more than one image a copy reorders ``acc`` [Cout, n, L] into ``out`` [n, Cout, L].
Sampling arithmetic is float32 for both dtypes; FP16 columns are rounded once when stored.

Offset layout (DCNv2, torchvision, ONNX ``DeformConv``): channel ``g*2K + 2k`` is the row (y)
offset and ``g*2K + 2k + 1`` the column (x) offset of tap ``k = i*kw + j`` of deformable group
``g``; mask channel ``g*K + k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import cuda, float32, int64
from numba.types import boolean, float16

from trtdet.cuda.launch import Launcher
from trtdet.cuda.runtime import SIMULATOR, blocks, numba_stream, torch_from_pointer
from trtdet.lazy import lazy_import
from trtdet_centernet.dcn_call import check_offset_mask, output_size

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

IM2COL_THREADS = 128
#: Largest column buffer one GEMM step uses; bigger batches run in chunks of images.
DEFAULT_WORKSPACE_BYTES = 512 << 20


@cuda.jit(device=True, inline=True)
def _bilinear_zero(x, b, c, h, w):
    """torchvision's bilinear sample of ``x[b, c]`` at (h, w): out-of-image corners read 0."""
    height = x.shape[2]
    width = x.shape[3]
    if h <= float32(-1.0) or h >= float32(height) or w <= float32(-1.0) or w >= float32(width):
        return float32(0.0)
    h_low = int64(math.floor(h))
    w_low = int64(math.floor(w))
    h_high = h_low + 1
    w_high = w_low + 1
    lh = h - float32(h_low)
    lw = w - float32(w_low)
    hh = float32(1.0) - lh
    hw = float32(1.0) - lw
    v1 = float32(x[b, c, h_low, w_low]) if h_low >= 0 and w_low >= 0 else float32(0.0)
    v2 = float32(x[b, c, h_low, w_high]) if h_low >= 0 and w_high <= width - 1 else float32(0.0)
    v3 = float32(x[b, c, h_high, w_low]) if h_high <= height - 1 and w_low >= 0 else float32(0.0)
    v4 = float32(x[b, c, h_high, w_high]) if h_high <= height - 1 and w_high <= width - 1 else float32(0.0)
    return hh * hw * v1 + hh * lw * v2 + lh * hw * v3 + lh * lw * v4


def _deform_im2col(x, offset, mask, cols, bias, acc, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                   dilation_w, groups, out_w, has_bias):
    """One thread per (column row c*K + k, image, output cell): the masked bilinear sample.

    Writes ``cols[c*K + k, b, cell]`` and, in its spare rows, the GEMM's initial value
    ``acc[o, b, cell] = bias[o]`` (0 without bias).
    """
    cell = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = cuda.blockIdx.y
    b = cuda.blockIdx.z
    if cell >= cols.shape[2]:
        return
    taps = mask.shape[1] // groups
    c = row // taps
    k = row - c * taps
    i = k // kernel_w
    j = k - i * kernel_w
    g = c // (x.shape[1] // groups)
    ho = cell // out_w
    wo = cell - ho * out_w
    dy = float32(offset[b, g * 2 * taps + 2 * k, ho, wo])
    dx = float32(offset[b, g * 2 * taps + 2 * k + 1, ho, wo])
    m = float32(mask[b, g * taps + k, ho, wo])
    h = float32(ho * stride_h - pad_h) + float32(i * dilation_h) + dy
    w = float32(wo * stride_w - pad_w) + float32(j * dilation_w) + dx
    cols[row, b, cell] = _bilinear_zero(x, b, c, h, w) * m
    o = row
    while o < acc.shape[0]:
        acc[o, b, cell] = bias[o] if has_bias else float32(0.0)
        o += cuda.gridDim.y


#: Python source of the kernel, for ``cuda.compile_ptx`` checks.
KERNEL_PY = _deform_im2col
deform_im2col = cuda.jit(_deform_im2col)


def kernel_signatures() -> list[tuple]:
    """Argument types for FP32 and FP16 tensors."""
    ints = (int64,) * 9
    return [
        (t[:, :, :, ::1], t[:, :, :, ::1], t[:, :, :, ::1], t[:, :, ::1], t[::1], t[:, :, ::1], *ints, boolean)
        for t in (float32, float16)
    ]


_launchers: dict[bool, Launcher] = {}


def _launcher(half: bool) -> Launcher:
    found = _launchers.get(half)
    if found is None:
        found = Launcher(deform_im2col, kernel_signatures()[1 if half else 0])
        _launchers[half] = found
    return found


@dataclass(frozen=True)
class DcnShape:
    """Static shape and hyper-parameters of one DCN layer call."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 1
    pad_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    deformable_groups: int = 1

    @property
    def taps(self) -> int:
        return self.kernel_h * self.kernel_w

    @property
    def out_h(self) -> int:
        return output_size(self.height, self.kernel_h, self.stride_h, self.pad_h, self.dilation_h)

    @property
    def out_w(self) -> int:
        return output_size(self.width, self.kernel_w, self.stride_w, self.pad_w, self.dilation_w)

    def check(self) -> None:
        if min(self.batch, self.in_channels, self.height, self.width, self.out_channels) < 1:
            raise ValueError(f"DCN: sizes must be positive, got {self}")
        if self.deformable_groups < 1 or self.in_channels % self.deformable_groups:
            raise ValueError(
                f"DCN: {self.in_channels} channels do not split into {self.deformable_groups} deformable groups"
            )
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"DCN: empty output {self.out_h}x{self.out_w} for {self}")


def dcn_workspace_bytes(shape: DcnShape, itemsize: int, limit: int = DEFAULT_WORKSPACE_BYTES) -> int:
    """Bytes of scratch ``dcn_forward_raw`` uses (the plugin's getWorkspaceSize)."""
    per_image = _per_image_bytes(shape, itemsize)
    return per_image * _chunk(shape, per_image, limit)


def _per_image_bytes(shape: DcnShape, itemsize: int) -> int:
    """Columns [C*K, L] plus the GEMM accumulator [Cout, L] of one image."""
    return (shape.in_channels * shape.taps + shape.out_channels) * shape.out_h * shape.out_w * itemsize


def _chunk(shape: DcnShape, per_image: int, limit: int) -> int:
    return max(1, min(shape.batch, limit // max(per_image, 1)))


_external_streams: dict[int, Any] = {}


def _torch_stream_for(handle: int) -> Any:
    found = _external_streams.get(handle)
    if found is None:
        found = torch.cuda.ExternalStream(handle) if handle else torch.cuda.default_stream()
        _external_streams[handle] = found
    return found


def _forward(x: Any, offset: Any, mask: Any, weight: Any, bias: Any, out: Any, shape: DcnShape, workspace: Any,
             nb_stream: Any) -> None:
    """im2col + one GEMM per chunk of images; torch ops run on torch's current stream (the caller's).

    Columns are laid out [C*K, n, L] so the whole chunk is one GEMM
    ``acc[Cout, n*L] += weight[Cout, C*K] @ cols[C*K, n*L]`` with ``acc`` pre-filled with the
    bias by the im2col kernel; for n > 1 a copy reorders ``acc`` into ``out`` [n, Cout, L].
    """
    rows, cells, out_ch = shape.in_channels * shape.taps, shape.out_h * shape.out_w, shape.out_channels
    chunk = workspace.numel() // ((rows + out_ch) * cells)
    weight2d = weight.view(out_ch, rows)
    launch = _launcher(x.element_size() == 2)
    has_bias = bias is not None
    if bias is None:  # the kernel never reads it; a buffer of its own (never an alias of one it writes)
        bias = _no_bias(workspace)
    for start in range(0, shape.batch, chunk):
        stop = min(shape.batch, start + chunk)
        n = stop - start
        cols = workspace[: rows * n * cells].view(rows, n, cells)
        if n == 1:
            acc = out[start].view(out_ch, 1, cells)
        else:
            acc = workspace[rows * n * cells : (rows + out_ch) * n * cells].view(out_ch, n, cells)
        launch(
            (blocks(cells, IM2COL_THREADS), rows, n),
            IM2COL_THREADS,
            nb_stream,
            x[start:stop] if n != shape.batch else x,
            offset[start:stop] if n != shape.batch else offset,
            mask[start:stop] if n != shape.batch else mask,
            cols,
            bias,
            acc,
            shape.kernel_w,
            shape.stride_h,
            shape.stride_w,
            shape.pad_h,
            shape.pad_w,
            shape.dilation_h,
            shape.dilation_w,
            shape.deformable_groups,
            shape.out_w,
            has_bias,
        )
        acc.view(out_ch, n * cells).addmm_(weight2d, cols.view(rows, n * cells))
        if n > 1:
            out[start:stop].view(n, out_ch, cells).copy_(acc.permute(1, 0, 2))


_no_bias_cache: dict[tuple, Any] = {}


def _no_bias(like: Any) -> Any:
    key = (like.dtype, like.device)
    found = _no_bias_cache.get(key)
    if found is None:
        found = _no_bias_cache[key] = torch.zeros(1, dtype=like.dtype, device=like.device)
    return found


def dcn_forward_raw(
    x_ptr: int,
    offset_ptr: int,
    mask_ptr: int,
    weight_ptr: int,
    bias_ptr: int | None,
    out_ptr: int,
    shape: DcnShape,
    dtype: Any,
    stream_handle: int,
    workspace_ptr: int | None = None,
    workspace_bytes: int = 0,
) -> None:
    """DCNv2 forward on raw device pointers, enqueued on ``stream_handle`` (a ``cudaStream_t``).

    Layouts (all C-contiguous, all ``dtype``: ``np.float32``/``np.float16`` or the torch dtypes):
    ``x`` [B, C, H, W], ``offset`` [B, 2*dg*kh*kw, Ho, Wo], ``mask`` [B, dg*kh*kw, Ho, Wo]
    (already sigmoid-ed), ``weight`` [Cout, C, kh, kw], ``bias`` [Cout] or None/0, ``out``
    [B, Cout, Ho, Wo] (written). ``Ho = (H + 2*pad_h - (dil_h*(kh-1) + 1)) // stride_h + 1``,
    likewise ``Wo``. Shapes and hyper-parameters come in ``shape`` (a ``DcnShape``).

    ``workspace_ptr``/``workspace_bytes``: column scratch, e.g. the TensorRT plugin's workspace
    sized by ``dcn_workspace_bytes(shape, itemsize)`` (at least one image's columns); None
    allocates it from torch's caching allocator on the stream. Nothing synchronises the host
    and nothing is copied to the host; returns as soon as the work is enqueued.
    """
    shape.check()
    torch_dtype = _torch_dtype(dtype)
    np_dtype = np.float16 if torch_dtype == torch.float16 else np.float32
    itemsize = np.dtype(np_dtype).itemsize
    b, c, k = shape.batch, shape.in_channels, shape.taps
    out_h, out_w = shape.out_h, shape.out_w
    groups = shape.deformable_groups
    x = torch_from_pointer(x_ptr, (b, c, shape.height, shape.width), np_dtype)
    offset = torch_from_pointer(offset_ptr, (b, 2 * groups * k, out_h, out_w), np_dtype)
    mask = torch_from_pointer(mask_ptr, (b, groups * k, out_h, out_w), np_dtype)
    weight = torch_from_pointer(weight_ptr, (shape.out_channels, c, shape.kernel_h, shape.kernel_w), np_dtype)
    bias = torch_from_pointer(bias_ptr, (shape.out_channels,), np_dtype) if bias_ptr else None
    out = torch_from_pointer(out_ptr, (b, shape.out_channels, out_h, out_w), np_dtype)
    per_image = _per_image_bytes(shape, itemsize)
    if SIMULATOR:
        workspace = _workspace(None, 0, shape, per_image, np_dtype, torch_dtype)
        _forward(x, offset, mask, weight, bias, out, shape, workspace, 0)
        return
    stream = _torch_stream_for(int(stream_handle))
    with torch.cuda.stream(stream):
        workspace = _workspace(workspace_ptr, workspace_bytes, shape, per_image, np_dtype, torch_dtype)
        _forward(x, offset, mask, weight, bias, out, shape, workspace, numba_stream(int(stream_handle)))


def _workspace(pointer: int | None, nbytes: int, shape: DcnShape, per_image: int, np_dtype: Any,
               torch_dtype: Any) -> Any:
    itemsize = np.dtype(np_dtype).itemsize
    if pointer:
        if nbytes < per_image:
            raise ValueError(f"DCN workspace: {nbytes} bytes, one image needs {per_image}")
        images = min(shape.batch, nbytes // per_image)
        return torch_from_pointer(pointer, (images * per_image // itemsize,), np_dtype)
    images = _chunk(shape, per_image, DEFAULT_WORKSPACE_BYTES)
    device = "cpu" if SIMULATOR else "cuda"
    return torch.empty(images * per_image // itemsize, dtype=torch_dtype, device=device)


def _torch_dtype(dtype: Any) -> Any:
    if dtype in (torch.float32, torch.float16):
        return dtype
    kind = np.dtype(dtype)
    if kind == np.float32:
        return torch.float32
    if kind == np.float16:
        return torch.float16
    raise ValueError(f"DCN dtype: expected float32 or float16, got {dtype}")


def _ready(tensor: Any, dtype: Any) -> Any:
    """``tensor`` in ``dtype``, C-contiguous (itself when it already is)."""
    if tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def modulated_deform_conv_cuda(
    x: Any,
    offset: Any,
    mask: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    deformable_groups: int = 1,
    stream: Any = None,
) -> Any:
    """DCNv2 forward on torch CUDA tensors (FP32/FP16): the signature of ``dcn.modulated_deform_conv``.

    Runs on ``stream`` (a torch stream; default torch's current one) and returns a new tensor.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    if in_per_group != channels:
        raise ValueError(f"weight expects {in_per_group} input channels, got {channels} (groups are not supported)")
    shape = DcnShape(batch, channels, height, width, out_channels, kh, kw, sh, sw, ph, pw, dh, dw, deformable_groups)
    shape.check()
    check_offset_mask(tuple(offset.shape), tuple(mask.shape), batch, deformable_groups, shape.taps, (shape.out_h, shape.out_w))
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"DCN dtype: expected float32 or float16, got {dtype}")
    x, offset, mask, weight = _ready(x, dtype), _ready(offset, dtype), _ready(mask, dtype), _ready(weight, dtype)
    bias = None if bias is None else _ready(bias, dtype)
    per_image = _per_image_bytes(shape, x.element_size())
    if SIMULATOR:
        out = torch.empty((batch, out_channels, shape.out_h, shape.out_w), dtype=dtype)
        workspace = _workspace(None, 0, shape, per_image, np.float16 if dtype == torch.float16 else np.float32, dtype)
        _forward(x, offset, mask, weight, bias, out, shape, workspace, 0)
        return out
    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    if stream is None:  # torch's current stream: no stream switch needed
        out = torch.empty((batch, out_channels, shape.out_h, shape.out_w), dtype=dtype, device=x.device)
        workspace = _workspace(None, 0, shape, per_image, np_dtype, dtype)
        _forward(x, offset, mask, weight, bias, out, shape, workspace, numba_stream(None))
        return out
    with torch.cuda.stream(stream):
        out = torch.empty((batch, out_channels, shape.out_h, shape.out_w), dtype=dtype, device=x.device)
        workspace = _workspace(None, 0, shape, per_image, np_dtype, dtype)
        _forward(x, offset, mask, weight, bias, out, shape, workspace, numba_stream(stream))
    return out


def warm_up(dtypes: tuple[Any, ...] = (np.float32, np.float16)) -> None:
    """Compile the im2col kernel for ``dtypes`` now (the plugin calls this when it is created)."""
    for dtype in dtypes:
        _launcher(np.dtype(dtype) == np.float16)
