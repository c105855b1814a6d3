"""DCNv2 (modulated deformable convolution) in plain torch, with upstream parameter names.

The module mirrors ``DCN`` of CharlesShang/DCNv2 as vendored by xingyizhou/CenterNet:
parameters ``weight``, ``bias`` and ``conv_offset_mask`` (a conv predicting
``3 * deformable_groups * kh * kw`` channels), and the forward
``o1, o2, m = chunk(conv_offset_mask(x), 3); offset = cat(o1, o2); mask = sigmoid(m)``.

Offset layout (DCNv2, torchvision and ONNX ``DeformConv`` agree): channel
``g * 2*K + 2*k`` is the y (row) offset and ``g * 2*K + 2*k + 1`` the x (column) offset of
tap ``k = i * kw + j`` in deformable group ``g``; mask channel ``g * K + k``. A sample at a
fractional position is bilinear with out-of-image corners read as zero, so a position
with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` contributes nothing.

On the CPU the forward is the pure-torch reference below. On CUDA it is
``trtdet_centernet.dcn_triton`` (one fused Triton kernel, a ``torch.library.triton_op``) when
``triton`` imports and ``TRTDET_DCN=gather`` is not set, else ``trtdet_centernet.dcn_gather``
(plain torch ops over channels-last tensors); calls the Triton kernel does not run (more than
one deformable group, dtypes other than float16/float32) also take ``dcn_gather``. Both run on the current stream, capture in CUDA
graphs and compile with Inductor; torchvision's ``deform_conv2d`` launches its im2col on the
legacy default stream and does neither. During ONNX export (TorchScript exporter) the op is
emitted as the standard ``DeformConv`` (opset 19).
"""

from __future__ import annotations

import math
import os
from types import ModuleType

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from trtdet_centernet.dcn_call import DeformConv, IntPair, check_offset_mask, output_size
from trtdet_centernet.dcn_gather import deform_conv2d_gather


def modulated_deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair = 1,
    padding: IntPair = 1,
    dilation: IntPair = 1,
    deformable_groups: int = 1,
) -> torch.Tensor:
    """Modulated deformable convolution (DCNv2), the pure-torch reference: a ``dcn_call.DeformConv``.

    Computes, per output position and tap, the bilinear sample of x at
    ``(ho*sh - ph + i*dh + dy, wo*sw - pw + j*dw + dx)`` times the mask, then a matmul with
    the weight (the im2col formulation of the original CUDA kernel).
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    if in_per_group != channels:
        raise ValueError(
            f"weight expects {in_per_group} input channels, got {channels} (groups are not supported)"
        )
    if channels % deformable_groups:
        raise ValueError(f"{channels} channels do not split into {deformable_groups} deformable groups")
    taps = kh * kw
    out_h = output_size(height, kh, sh, ph, dh)
    out_w = output_size(width, kw, sw, pw, dw)
    check_offset_mask(tuple(offset.shape), tuple(mask.shape), batch, deformable_groups, taps, (out_h, out_w))

    dtype, device = x.dtype, x.device
    offset = offset.reshape(batch, deformable_groups, taps, 2, out_h, out_w)
    mask = mask.reshape(batch, deformable_groups, taps, out_h, out_w)
    tap_y = (torch.arange(kh, device=device, dtype=dtype) * dh).repeat_interleave(kw)  # [K]
    tap_x = (torch.arange(kw, device=device, dtype=dtype) * dw).repeat(kh)  # [K]
    grid_y = torch.arange(out_h, device=device, dtype=dtype) * sh - ph  # [Ho]
    grid_x = torch.arange(out_w, device=device, dtype=dtype) * sw - pw  # [Wo]
    py = grid_y.view(1, 1, 1, out_h, 1) + tap_y.view(1, 1, taps, 1, 1) + offset[:, :, :, 0]
    px = grid_x.view(1, 1, 1, 1, out_w) + tap_x.view(1, 1, taps, 1, 1) + offset[:, :, :, 1]

    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly, lx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    flat = x.reshape(batch, deformable_groups, channels // deformable_groups, height * width)
    samples = taps * out_h * out_w
    cols = torch.zeros(
        batch, deformable_groups, channels // deformable_groups, samples, dtype=dtype, device=device
    )
    for yy, xx, wgt in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        valid = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).reshape(
            batch, deformable_groups, 1, samples
        )
        corner_weight = (wgt * valid.to(dtype) * mask).reshape(batch, deformable_groups, 1, samples)
        gathered = torch.gather(flat, 3, index.expand(-1, -1, flat.shape[2], -1))
        cols = cols + gathered * corner_weight
    # [B, C, K, L] -> [B, C*K, L]: channel-major then tap, matching weight.view(Cout, C*K).
    cols = cols.reshape(batch, channels * taps, out_h * out_w)
    out = torch.matmul(weight.reshape(out_channels, channels * taps), cols)
    if bias is not None:
        out = out + bias.view(1, out_channels, 1)
    return out.reshape(batch, out_channels, out_h, out_w)


#: ``TRTDET_DCN`` values: unset or empty: the Triton kernel for float16 layers of at most
#: ``TRITON_MAX_CHANNELS`` input channels, dcn_gather for the rest; ``triton``: the Triton kernel
#: wherever it runs; ``gather``: dcn_gather everywhere. Measured per layer on the H200 (fp16,
#: ``benchmarks/results/dcn_h200.md``, one run), Triton against dcn_gather compiled by Inductor:
#: 128->64 @64x64 375 against 494 us at batch 32 (196 against 196 at batch 1), but 256->128 @32x32
#: 336 against 309 and 512->256 @16x16 347 against 189; in float32 the kernel's exact (non-TF32)
#: dot ran 2-2.5x slower than torchvision's.
TRITON_MAX_CHANNELS = 128
DCN_ENV = "TRTDET_DCN"
_DCN_CHOICES = ("", "triton", "gather")
_triton_missing = False  # set once ``triton`` failed to import, so later calls skip the attempt


def _load_triton_dcn() -> ModuleType | None:
    """``trtdet_centernet.dcn_triton``, or None when ``triton`` does not import.

    A plain ``import`` (not importlib, not a cache) so that dynamo traces it without a graph break.
    """
    global _triton_missing
    if _triton_missing:
        return None
    try:
        from trtdet_centernet import dcn_triton
    except ImportError:
        _triton_missing = True
        return None
    return dcn_triton


def cuda_variant() -> str:
    """Which DCNv2 policy CUDA networks built now follow: ``"triton"`` (the default: narrow float16
    layers on the Triton kernel), ``"triton-all"`` (``TRTDET_DCN=triton``) or ``"gather"``; calls
    the Triton kernel refuses use ``gather`` either way."""
    choice = os.environ.get(DCN_ENV, "").strip().lower()
    if choice == "gather" or _load_triton_dcn() is None:
        return "gather"
    return "triton-all" if choice == "triton" else "triton"


def cuda_implementation(x: torch.Tensor, weight: torch.Tensor, deformable_groups: int) -> DeformConv:
    """The CUDA DCNv2 for this call: ``deform_conv2d_triton`` when ``triton`` imports, the call is one
    it runs and ``TRTDET_DCN`` picks it (by default: float16 layers of at most 128 input channels,
    where it was faster); else ``deform_conv2d_gather``."""
    choice = os.environ.get(DCN_ENV, "").strip().lower()
    if choice not in _DCN_CHOICES:
        raise ValueError(f"{DCN_ENV}={os.environ[DCN_ENV]!r}: expected 'gather' or 'triton' (or unset)")
    if choice == "triton" or (choice == "" and x.dtype == torch.float16 and x.shape[1] <= TRITON_MAX_CHANNELS):
        triton_dcn = _load_triton_dcn()
        if triton_dcn is not None and triton_dcn.supports(x, weight, deformable_groups):
            return triton_dcn.deform_conv2d_triton
    return deform_conv2d_gather


def deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair = 1,
    padding: IntPair = 1,
    dilation: IntPair = 1,
    deformable_groups: int = 1,
) -> torch.Tensor:
    """DCNv2 on ``x``'s device: ``cuda_implementation``'s choice on CUDA, the reference
    ``modulated_deform_conv`` on the CPU."""
    if x.is_cuda:
        implementation = cuda_implementation(x, weight, deformable_groups)
        return implementation(
            x, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation), deformable_groups
        )
    return modulated_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, deformable_groups)


class _DeformConvOnnx(torch.autograd.Function):
    """Runs the reference forward; exports as ONNX ``DeformConv`` (TorchScript exporter).

    Geometry is passed as plain ints: the TorchScript exporter does not carry tuples.
    """

    @staticmethod
    def forward(ctx, x, offset, mask, weight, bias, kh, kw, sh, sw, ph, pw, dh, dw, groups):  # type: ignore[override]
        # The exporter records only the symbolic; tracing the reference's internals into the
        # op's subgraph trips TorchScript's peephole pass, so compute the value untraced.
        args = (x, offset, mask, weight, bias, (sh, sw), (ph, pw), (dh, dw), groups)
        get_state = getattr(torch._C, "_get_tracing_state", None)
        set_state = getattr(torch._C, "_set_tracing_state", None)
        if get_state is None or set_state is None:
            return modulated_deform_conv(*args)
        state = get_state()
        set_state(None)
        try:
            return modulated_deform_conv(*args)
        finally:
            set_state(state)

    @staticmethod
    def symbolic(g, x, offset, mask, weight, bias, kh, kw, sh, sw, ph, pw, dh, dw, groups):  # type: ignore[no-untyped-def]
        return g.op(
            "DeformConv",
            x,
            weight,
            offset,
            bias,
            mask,
            kernel_shape_i=[kh, kw],
            strides_i=[sh, sw],
            pads_i=[ph, pw, ph, pw],
            dilations_i=[dh, dw],
            group_i=1,
            offset_group_i=groups,
        )


class DCNv2(nn.Module):
    """DCNv2 with its offset/mask predictor, parameter names as in upstream checkpoints.

    ``conv_offset_mask`` uses the DCN's stride and padding like upstream (and its dilation,
    which upstream leaves at 1: CenterNet only uses dilation 1, where both agree).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 1,
        dilation: IntPair = 1,
        deformable_groups: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = in_ch
        self.out_channels = out_ch
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_ch))
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            in_ch,
            3 * deformable_groups * taps,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream init: uniform(+-1/sqrt(fan_in)) weight, zero bias, zero offset/mask conv."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offset_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cat(o1, o2)`` and ``sigmoid(m)`` of upstream's three-way chunk.

        ``cat(o1, o2)`` of the first two thirds is exactly the first two thirds, so a slice
        gives the same tensor with static shapes in the exported graph.
        """
        out = self.conv_offset_mask(x)
        taps = self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        # (channels past 3 * taps are padding: see ``network.pad_offset_convs``)
        return out[:, : 2 * taps], torch.sigmoid(out[:, 2 * taps : 3 * taps])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offset_and_mask(x)
        args = (self.stride, self.padding, self.dilation, self.deformable_groups)
        if torch.onnx.is_in_onnx_export():
            geometry = (
                *self.kernel_size,
                *self.stride,
                *self.padding,
                *self.dilation,
                self.deformable_groups,
            )
            return _DeformConvOnnx.apply(x, offset, mask, self.weight, self.bias, *geometry)
        return deform_conv(x, offset, mask, self.weight, self.bias, *args)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, deformable_groups={self.deformable_groups}"
        )
