"""DCNv2 on CUDA as one fused Triton kernel: an implicit GEMM that never writes the column matrix.

``dcn_gather`` builds the ``[B*Ho*Wo, K*C]`` columns (bilinear samples times the mask) in
memory and multiplies them by the weight; the columns make a full round trip through HBM
(about 300 MB in fp16 at batch 32, 128 -> 64 channels at 64x64). This kernel computes the
same product tile by tile: a program owns ``BLOCK_M`` output pixels (rows of the flattened
``B*Ho*Wo``) by ``BLOCK_N`` output channels and walks the reduction over the 9 taps times the
input channels in ``BLOCK_K`` chunks. For each chunk it computes every row's sample position
from the offsets (float32), loads the four corner rows of ``BLOCK_K`` channels from ``x``
(channels-last: contiguous), blends them bilinearly times the mask (float32, then the input
dtype) into the A tile, loads the matching weight tile and accumulates ``tl.dot`` in float32.
The bias is added at the end and the output is written NHWC, returned as a [B, Cout, Ho, Wo]
tensor with channels-last strides (like ``dcn_gather``). ``x`` and the weight are read
channels-last, as a channels-last network holds them; other layouts are copied once per call.

Semantics are DCNv2's (see ``trtdet_centernet.dcn``): offset channel ``2k`` is tap ``k``'s row
offset, ``2k+1`` its column offset, mask channel ``k``; out-of-image corners read zero. One
deformable group only (``supports`` says whether a call can run here). float32 inputs multiply
in full float32 (``input_precision="ieee"``, no TF32), as the rest of trtdet's fp32 path.

The op is a ``torch.library.triton_op`` (``trtdet_centernet::deform_conv2d``): it runs on the
current stream, captures in CUDA graphs, and ``torch.export`` / AOTInductor trace the kernel
into the compiled package. Block sizes are picked from the channel counts and dtype (``kernel_config``),
never from the batch, so a dynamic batch dimension stays symbolic and every batch size runs
the same compiled kernel. Under ``TRITON_INTERPRET=1`` (set before this module is imported)
the kernel runs on CPU tensors through Triton's interpreter, which is how the CPU tests run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from trtdet_centernet.dcn_call import check_offset_mask, output_size

#: Input dtypes the kernel runs (the weight must match ``x``). bfloat16 is left out: Triton's
#: interpreter, which the CPU tests use, gives garbage for it, so it would be untested.
DTYPES = (torch.float16, torch.float32)


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes and launch parameters of one kernel launch."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    #: Corner rows through L1 (``cache_modifier=".ca"``): neighbouring pixels and taps read the
    #: same input pixels (each about 36 times), which L2-only copies fetch again every time.
    l1_corners: bool = True


def kernel_config(channels: int, out_channels: int, dtype: torch.dtype) -> KernelConfig:
    """Tiles for ``channels`` -> ``out_channels`` in ``dtype``.

    64 output pixels by up to 128 output channels per program; the reduction steps through
    64 channels in half precision (one 128-byte line per corner row) and 32 in float32.
    Two stages let Triton prefetch the next chunk's corner rows and weights into shared memory
    (16-byte asynchronous copies) while the current chunk multiplies. Compiled offline for
    sm_90 these use no local memory (spills). Depends on no batch-sized quantity, so an
    exported graph keeps its symbolic batch and every batch size runs the same compiled kernel.
    ``benchmarks/dcn_triton_configs.py`` times alternatives on a GPU.
    """
    half = dtype == torch.float16
    block_k = min(64 if half else 32, max(16, triton.next_power_of_2(channels)))
    block_n = min(128, max(16, triton.next_power_of_2(out_channels)))
    return KernelConfig(64, block_n, block_k, num_warps=4 if half else 8, num_stages=2)


@triton.jit
def _corner(x_rows, yy, xx, weight, height, width, sxh, sxw, channel_offsets, channel_ok, row_ok,
            L1_CORNERS: tl.constexpr):  # fmt: skip
    """``weight`` times the ``BLOCK_K`` channels of pixel (yy, xx) per row; zero outside the image."""
    inside = row_ok & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
    pointers = x_rows[:, None] + (yy * sxh + xx * sxw)[:, None] + channel_offsets[None, :]
    valid = inside[:, None] & channel_ok[None, :]
    # Masked-off lanes may point outside x (positions are clamped to two pixels beyond the image;
    # rows past the last pixel are one image beyond) and are never read. A tl.where to zero them
    # hides the rows' alignment from Triton, which then issues 2-byte loads instead of pipelined
    # 16-byte copies (test_dcn_triton_compile.py checks).
    if L1_CORNERS:
        values = tl.load(pointers, mask=valid, other=0.0, cache_modifier=".ca")
    else:
        values = tl.load(pointers, mask=valid, other=0.0)
    return values.to(tl.float32) * weight[:, None]


@triton.jit
def _deform_conv2d_kernel(
    x_ptr, offset_ptr, mask_ptr, weight_ptr, bias_ptr, out_ptr,
    rows_total, channels, height, width, out_h, out_w, out_channels,
    sxb, sxc, sxh, sxw,  # x [B, C, H, W]
    sob, soc, soh, sow,  # offset [B, 2K, Ho, Wo]
    smb, smc, smh, smw,  # mask [B, K, Ho, Wo]
    swn, swc, swh, sww,  # weight [Cout, C, kh, kw]
    syb, syc, syh, syw,  # out [B, Cout, Ho, Wo]
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, L1_CORNERS: tl.constexpr,
):  # fmt: skip
    # Tile: output channel tiles vary fastest, so the programs sharing an M tile run together.
    pid = tl.program_id(0)
    n_tiles = tl.cdiv(out_channels, BLOCK_N)
    rows = (pid // n_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (pid % n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < rows_total
    col_ok = cols < out_channels

    # Row -> (b, ho, wo); per-row base pointers (int64: batch strides can be large).
    wo = rows % out_w
    ho = (rows // out_w) % out_h
    b = (rows // (out_w * out_h)).to(tl.int64)
    x_rows = x_ptr + b * sxb
    offset_rows = offset_ptr + b * sob + ho * soh + wo * sow
    mask_rows = mask_ptr + b * smb + ho * smh + wo * smw
    origin_y = (ho * stride_h - pad_h).to(tl.float32)
    origin_x = (wo * stride_w - pad_w).to(tl.float32)
    max_y = height * 1.0 + 1.0  # float32 (a plain float when Triton specialises the size to 1)
    max_x = width * 1.0 + 1.0

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    chunks = tl.cdiv(channels, BLOCK_K)
    # One flat loop over (tap, channel chunk): the sample positions are recomputed per chunk
    # (three loads of BLOCK_M values), which keeps a single pipelined loop for any C.
    for step in range(0, KH * KW * chunks):
        tap = step // chunks
        c0 = (step - tap * chunks) * BLOCK_K
        dy = tl.load(offset_rows + (2 * tap) * soc, mask=row_ok, other=0.0).to(tl.float32)
        dx = tl.load(offset_rows + (2 * tap + 1) * soc, mask=row_ok, other=0.0).to(tl.float32)
        modulation = tl.load(mask_rows + tap * smc, mask=row_ok, other=0.0).to(tl.float32)
        # Positions at or beyond one pixel outside read only zeros; clamping there changes
        # nothing and keeps the integer conversion in range for wild offsets.
        y = tl.minimum(tl.maximum(origin_y + ((tap // KW) * dil_h).to(tl.float32) + dy, -2.0), max_y)
        x = tl.minimum(tl.maximum(origin_x + ((tap % KW) * dil_w).to(tl.float32) + dx, -2.0), max_x)
        y_floor = tl.floor(y)
        x_floor = tl.floor(x)
        fy = y - y_floor
        fx = x - x_floor
        y0 = y_floor.to(tl.int32)
        x0 = x_floor.to(tl.int32)

        channel = c0 + tl.arange(0, BLOCK_K)
        channel_ok = channel < channels
        channel_offsets = channel * sxc
        a = _corner(x_rows, y0, x0, (1 - fy) * (1 - fx) * modulation,
                    height, width, sxh, sxw, channel_offsets, channel_ok, row_ok, L1_CORNERS)  # fmt: skip
        a += _corner(x_rows, y0, x0 + 1, (1 - fy) * fx * modulation,
                     height, width, sxh, sxw, channel_offsets, channel_ok, row_ok, L1_CORNERS)  # fmt: skip
        a += _corner(x_rows, y0 + 1, x0, fy * (1 - fx) * modulation,
                     height, width, sxh, sxw, channel_offsets, channel_ok, row_ok, L1_CORNERS)  # fmt: skip
        a += _corner(x_rows, y0 + 1, x0 + 1, fy * fx * modulation,
                     height, width, sxh, sxw, channel_offsets, channel_ok, row_ok, L1_CORNERS)  # fmt: skip

        w = tl.load(
            weight_ptr + (tap // KW) * swh + (tap % KW) * sww + channel[:, None] * swc + cols[None, :] * swn,
            mask=channel_ok[:, None] & col_ok[None, :],
            other=0.0,
        )
        if IEEE:  # noqa: SIM108 (float32 stays float32: no TF32 rounding of the operands)
            acc = tl.dot(a.to(w.dtype), w, acc, input_precision="ieee")
        else:
            acc = tl.dot(a.to(w.dtype), w, acc)

    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    out_rows = out_ptr + b * syb + ho * syh + wo * syw
    tl.store(
        out_rows[:, None] + cols[None, :] * syc,
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


def unsupported_reason(x: torch.Tensor, weight: torch.Tensor, deformable_groups: int) -> str | None:
    """Why this kernel cannot run the call (one line), or None when it can."""
    if deformable_groups != 1:
        return f"deformable_groups={deformable_groups} (the Triton DCN runs one group)"
    if x.dtype not in DTYPES:
        return f"input dtype {x.dtype} (the Triton DCN runs float16 and float32)"
    if weight.dtype != x.dtype:
        return f"weight dtype {weight.dtype} differs from the input's {x.dtype}"
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        return f"input {tuple(x.shape)} and weight {tuple(weight.shape)} are not a [B, C, H, W] x [Cout, C, kh, kw] pair"
    return None


def supports(x: torch.Tensor, weight: torch.Tensor, deformable_groups: int) -> bool:
    """Whether ``deform_conv2d_triton`` runs this call (else use ``dcn_gather``)."""
    return unsupported_reason(x, weight, deformable_groups) is None


def launch(
    kernel: Any,
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Allocate the output and launch ``kernel`` (the Triton kernel, or ``wrap_triton`` of it
    inside the op). ``config`` defaults to ``kernel_config``'s; benchmarks pass others."""
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2], offset.shape[3]
    out = torch.empty(
        (batch, out_channels, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last
    )
    # Channels-last weight (as a channels-last network holds it: then this is no copy): a tap's
    # weight tile is BLOCK_N runs of BLOCK_K contiguous input channels.
    weight = weight.contiguous(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)  # a corner is C contiguous values
    config = config or kernel_config(channels, out_channels, x.dtype)
    rows_total = batch * out_h * out_w
    grid = (triton.cdiv(rows_total, config.block_m) * triton.cdiv(out_channels, config.block_n),)
    kernel[grid](
        x, offset, mask, weight, weight if bias is None else bias, out,
        rows_total, channels, height, width, out_h, out_w, out_channels,
        *x.stride(), *offset.stride(), *mask.stride(), *weight.stride(), *out.stride(),
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        KH=kh, KW=kw, HAS_BIAS=bias is not None, IEEE=x.dtype == torch.float32,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, L1_CORNERS=config.l1_corners,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )  # fmt: skip
    return out


@triton_op("trtdet_centernet::deform_conv2d", mutates_args=())
def _deform_conv2d_op(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
) -> torch.Tensor:
    return launch(wrap_triton(_deform_conv2d_kernel), x, offset, mask, weight, bias, stride, padding, dilation)


def deform_conv2d_triton(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    deformable_groups: int = 1,
) -> torch.Tensor:
    """A ``dcn_call.DeformConv`` (one deformable group; ``x`` channels-last is fastest) -> in ``x``'s
    dtype with channels-last strides. ``ValueError`` (one line) for calls the kernel does not run:
    see ``unsupported_reason``.
    """
    reason = unsupported_reason(x, weight, deformable_groups)
    if reason is not None:
        raise ValueError(f"deform_conv2d_triton: {reason}")
    _, _, height, width = x.shape
    _, _, kh, kw = weight.shape
    out_h = output_size(height, kh, stride[0], padding[0], dilation[0])
    out_w = output_size(width, kw, stride[1], padding[1], dilation[1])
    out = (out_h, out_w)
    check_offset_mask(tuple(offset.shape), tuple(mask.shape), x.shape[0], 1, kh * kw, out, "deform_conv2d_triton: ")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"deform_conv2d_triton: bias {tuple(bias.shape)} for {weight.shape[0]} output channels")
    return _deform_conv2d_op(x, offset, mask, weight, bias, list(stride), list(padding), list(dilation))
