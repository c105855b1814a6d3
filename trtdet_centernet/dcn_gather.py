"""DCNv2 on CUDA as plain torch ops over channels-last tensors: stream-safe, capturable, compilable.

``torchvision.ops.deform_conv2d`` launches its im2col kernel on the legacy default stream
(``<<<blocks, threads>>>`` without a stream) while its GEMM runs on the current stream. On
the non-blocking stream a pipeline runs on, the two do not wait for each other, so the
im2col may read offsets the previous convolution has not written yet; and a CUDA graph
captures the GEMM but not the im2col, so every replay multiplies the columns of the capture
(measured on the H200: replays of two different inputs gave identical outputs). This version
has no kernel of its own: every op runs on the current stream, ``torch.export`` traces it and
Inductor fuses the bilinear sampling into one gather kernel.

Layout: with ``x`` channels-last, the four corners of a sample are four rows of ``C``
contiguous values, so the gathers read whole cache lines. The columns are built as
``[B, Ho*Wo, K*C]`` (tap-major, then channel) and one matmul with the weight reordered to
``[Cout, K*C]`` gives the output in NHWC order directly. Sample positions and bilinear
weights are computed in float32 whatever the input precision; the columns take the input's
dtype. Semantics are DCNv2's (see ``trtdet_centernet.dcn``): out-of-image corners read zero.
"""

from __future__ import annotations

import torch


def deform_conv2d_gather(
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
    """A ``dcn_call.DeformConv`` in torch ops; the output has channels-last strides."""
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2], offset.shape[3]
    groups, taps = deformable_groups, kh * kw
    per_group = channels // groups
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    device = x.device

    # Sample positions [B, Ho, Wo, K, G] in float32.
    offsets = offset.permute(0, 2, 3, 1).reshape(batch, out_h, out_w, groups, taps, 2).transpose(3, 4).float()
    rows = (torch.arange(out_h, device=device) * sh - ph).float().view(1, out_h, 1, 1, 1)
    cols = (torch.arange(out_w, device=device) * sw - pw).float().view(1, 1, out_w, 1, 1)
    tap_rows = (torch.arange(kh, device=device) * dh).repeat_interleave(kw).float().view(1, 1, 1, taps, 1)
    tap_cols = (torch.arange(kw, device=device) * dw).repeat(kh).float().view(1, 1, 1, taps, 1)
    sample_y = rows + tap_rows + offsets[..., 0]
    sample_x = cols + tap_cols + offsets[..., 1]
    modulation = mask.permute(0, 2, 3, 1).reshape(batch, out_h, out_w, groups, taps).transpose(3, 4).float()

    y0 = torch.floor(sample_y)
    x0 = torch.floor(sample_x)
    fy, fx = sample_y - y0, sample_x - x0
    y0, x0 = y0.long(), x0.long()
    # Rows of C/G values: [B, H*W*G, C/G]; a corner (y, x) of group g is row (y*W + x)*G + g.
    pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width * groups, per_group)
    group_index = torch.arange(groups, device=device).view(1, 1, 1, 1, groups)
    samples = out_h * out_w * taps * groups
    columns = None
    for dy, dx, corner_weight in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        row = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)) * groups + group_index
        scale = (corner_weight * modulation * inside).reshape(batch, samples, 1)
        values = torch.gather(pixels, 1, row.reshape(batch, samples, 1).expand(batch, samples, per_group))
        term = values.float() * scale
        columns = term if columns is None else columns + term
    assert columns is not None
    # [B, Ho*Wo, K*G*C/G] = [B, L, K*C]: tap-major, then channel (g*C/G + c).
    columns = columns.to(x.dtype).reshape(batch * out_h * out_w, taps * channels)
    flat_weight = weight.permute(0, 2, 3, 1).reshape(out_channels, taps * channels)
    out = columns @ flat_weight.t()
    if bias is not None:
        out = out + bias
    return out.reshape(batch, out_h, out_w, out_channels).permute(0, 3, 1, 2)
