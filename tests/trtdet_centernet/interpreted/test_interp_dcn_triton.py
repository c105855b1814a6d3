"""The fused Triton DCNv2 kernel, run on CPU tensors by Triton's interpreter (``TRITON_INTERPRET=1``).

References: ONNX Runtime's DeformConv (opset 19) for square geometry, and the float64 pure-torch
``modulated_deform_conv`` (itself checked against ONNX Runtime in test_dcn.py) where ONNX
Runtime's helper takes only square stride/padding/dilation; one hand-computed border case.
Shapes are small and odd so that M (pixels), N (output channels) and the reduction (channels
per tap) all end in partial blocks of the kernel's tiles.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/trtdet_centernet/test_dcn_triton.py"

from trtdet_centernet.dcn import DCNv2, modulated_deform_conv  # noqa: E402
from trtdet_centernet.dcn_triton import (  # noqa: E402
    KernelConfig,
    _deform_conv2d_kernel,
    deform_conv2d_triton,
    kernel_config,
    launch,
)

from ..test_dcn import ort_deform_conv  # noqa: E402


def _output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


def _case(batch, channels, height, width, out_ch, kernel, stride, padding, dilation, scale, seed=0):
    """float32 numpy arrays (x, offset, mask, weight, bias); ``stride`` etc. are (h, w) pairs."""
    rng = np.random.default_rng(seed)
    out_h = _output_size(height, kernel, stride[0], padding[0], dilation[0])
    out_w = _output_size(width, kernel, stride[1], padding[1], dilation[1])
    taps = kernel * kernel
    x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
    offset = (rng.standard_normal((batch, 2 * taps, out_h, out_w)) * scale).astype(np.float32)
    mask = rng.random((batch, taps, out_h, out_w)).astype(np.float32)
    weight = (rng.standard_normal((out_ch, channels, kernel, kernel)) / np.sqrt(channels * taps)).astype(np.float32)
    bias = rng.standard_normal(out_ch).astype(np.float32)
    return x, offset, mask, weight, bias


def _outside_fraction(offset, kernel, stride, padding, dilation, height, width):
    """Share of (pixel, tap) samples whose bilinear footprint misses the image entirely."""
    batch, _, out_h, out_w = offset.shape
    taps = kernel * kernel
    rows = (np.arange(out_h) * stride[0] - padding[0])[None, None, :, None]
    cols = (np.arange(out_w) * stride[1] - padding[1])[None, None, None, :]
    tap_rows = (np.repeat(np.arange(kernel), kernel) * dilation[0])[None, :, None, None]
    tap_cols = (np.tile(np.arange(kernel), kernel) * dilation[1])[None, :, None, None]
    y = rows + tap_rows + offset[:, 0::2]
    x = cols + tap_cols + offset[:, 1::2]
    outside = (y <= -1) | (y >= height) | (x <= -1) | (x >= width)
    assert outside.shape == (batch, taps, out_h, out_w)
    return float(outside.mean())


def _run(arrays, stride, padding, dilation, dtype=torch.float32, with_bias=True):
    x, offset, mask, weight, bias = (torch.from_numpy(a).to(dtype) for a in arrays)
    x = x.contiguous(memory_format=torch.channels_last)
    got = deform_conv2d_triton(x, offset, mask, weight, bias if with_bias else None, stride, padding, dilation)
    assert got.dtype == dtype
    assert got.is_contiguous(memory_format=torch.channels_last)
    return got.float().numpy()


SQUARE = [
    # (batch, channels, height, width, out_ch, kernel, stride, padding, dilation, offset scale)
    pytest.param(2, 20, 7, 9, 19, 3, 1, 1, 1, 3.0, id="plain-20to19"),
    pytest.param(2, 20, 9, 11, 19, 3, 2, 1, 1, 3.0, id="stride2"),
    pytest.param(1, 36, 8, 7, 33, 3, 1, 2, 2, 3.0, id="dilation2-pad2"),
    pytest.param(1, 70, 5, 6, 130, 3, 1, 1, 1, 2.0, id="two-channel-chunks-two-n-tiles"),
    pytest.param(2, 5, 6, 5, 3, 3, 2, 2, 2, 8.0, id="mostly-far-outside"),
    pytest.param(1, 17, 6, 7, 9, 1, 1, 0, 1, 1.5, id="kernel1"),
]


@pytest.mark.parametrize(("batch", "channels", "height", "width", "out_ch", "kernel", "stride", "padding",
                          "dilation", "scale"), SQUARE)
def test_fp32_matches_onnxruntime(batch, channels, height, width, out_ch, kernel, stride, padding, dilation, scale):
    geometry = ((stride,) * 2, (padding,) * 2, (dilation,) * 2)
    arrays = _case(batch, channels, height, width, out_ch, kernel, *geometry, scale)
    # Some samples must leave the image for the border rule to be exercised.
    assert _outside_fraction(arrays[1], kernel, *geometry, height, width) > 0.05
    config = kernel_config(channels, out_ch, torch.float32)
    out_h, out_w = arrays[1].shape[2:]
    # At least one of M, N, C ends in a partial tile in every case.
    assert (batch * out_h * out_w) % config.block_m or out_ch % config.block_n or channels % config.block_k
    expected = ort_deform_conv(*arrays, stride, padding, dilation, 1)
    got = _run(arrays, *geometry)
    scale_out = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6 * scale_out)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation"),
    [((2, 1), (0, 2), (1, 2)), ((1, 3), (2, 1), (3, 1))],
    ids=["s21-p02-d12", "s13-p21-d31"],
)
def test_fp32_non_square_geometry_matches_the_float64_reference(stride, padding, dilation):
    arrays = _case(2, 24, 10, 9, 21, 3, stride, padding, dilation, 3.0, seed=5)
    x, offset, mask, weight, bias = (torch.from_numpy(a).double() for a in arrays)
    expected = modulated_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, 1).numpy()
    got = _run(arrays, stride, padding, dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6 * float(np.abs(expected).max()))


def test_without_bias_matches_onnxruntime_with_zero_bias():
    arrays = list(_case(2, 20, 7, 9, 19, 3, (1, 1), (1, 1), (1, 1), 3.0, seed=2))
    got = _run(arrays, (1, 1), (1, 1), (1, 1), with_bias=False)
    arrays[4] = np.zeros_like(arrays[4])
    expected = ort_deform_conv(*arrays, 1, 1, 1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6 * float(np.abs(expected).max()))


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width", "out_ch", "stride", "dilation"),
    [(2, 20, 7, 9, 19, 1, 1), (1, 70, 6, 5, 40, 2, 2)],
    ids=["plain", "stride2-dilation2"],
)
def test_fp16_matches_onnxruntime_on_the_same_half_precision_inputs(batch, channels, height, width, out_ch,
                                                                      stride, dilation):
    arrays = _case(batch, channels, height, width, out_ch, 3, (stride,) * 2, (1, 1), (dilation,) * 2, 3.0, seed=3)
    halves = [a.astype(np.float16).astype(np.float32) for a in arrays]  # the values the kernel sees
    expected = ort_deform_conv(*halves, stride, 1, dilation, 1)
    got = _run(arrays, (stride,) * 2, (1, 1), (dilation,) * 2, dtype=torch.float16)
    # Samples are rounded to fp16 once (as dcn_gather's columns are), products accumulate in fp32.
    error = float(np.abs(got - expected).max())
    assert error < 4e-3 * float(np.abs(expected).max()), f"fp16 kernel is {error:.3g} off ONNX Runtime"


def test_border_rule_and_wild_offsets_on_a_hand_computed_case():
    """A 1x1 kernel at y = -0.5 reads half of row 0; y <= -1 or an offset of 1e9 reads zero."""
    x = torch.arange(1.0, 7.0).view(1, 1, 2, 3)  # rows [1, 2, 3], [4, 5, 6]
    weight, bias = torch.ones(1, 1, 1, 1), torch.zeros(1)
    mask = torch.ones(1, 1, 2, 3)
    offset = torch.zeros(1, 2, 2, 3)
    offset[0, 0, 0, 1] = -0.5  # (0, 1) samples y = -0.5: 0.5 * 2 = 1.0
    offset[0, 0, 1, 0] = -2.0  # (1, 0) samples y = -1: nothing
    offset[0, 1, 1, 2] = 0.25  # (1, 2) samples x = 2.25: 0.75 * 6 = 4.5
    offset[0, 0, 0, 2] = 1.0  # (0, 2) samples y = 1: 6
    offset[0, 1, 0, 0] = 1e9  # (0, 0) samples x = 1e9: nothing
    offset[0, 0, 1, 1] = -1e9  # (1, 1) samples y = -1e9: nothing
    got = deform_conv2d_triton(x, offset, mask, weight, bias, (1, 1), (0, 0), (1, 1))
    assert got[0, 0].tolist() == [[0.0, 1.0, 6.0], [0.0, 0.0, 4.5]]


def test_network_layer_with_sliced_channels_last_offsets_matches_the_float64_reference():
    """As ``DCNv2.forward`` calls it in a channels-last network: offset and mask are channel slices of
    one channels-last conv output, and the weight is channels-last (used as it is, no copy)."""
    torch.manual_seed(0)
    layer = DCNv2(24, 18, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.2)
    torch.nn.init.normal_(layer.conv_offset_mask.bias, std=1.0)
    layer = layer.to(memory_format=torch.channels_last)
    assert layer.weight.is_contiguous(memory_format=torch.channels_last) and not layer.weight.is_contiguous()
    x = torch.randn(3, 24, 7, 8)
    with torch.no_grad():
        offset, mask = layer.offset_and_mask(x.contiguous(memory_format=torch.channels_last))
        assert not offset.is_contiguous() and not mask.is_contiguous()
        got = deform_conv2d_triton(x.contiguous(memory_format=torch.channels_last), offset, mask, layer.weight,
                                   layer.bias, (1, 1), (1, 1), (1, 1))
        expected = modulated_deform_conv(x.double(), offset.double(), mask.double(), layer.weight.double(),
                                         layer.bias.double(), 1, 1, 1, 1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=2e-6 * float(expected.abs().max()))


@pytest.mark.parametrize(
    "config",
    [KernelConfig(128, 16, 16, 4, 1), KernelConfig(32, 64, 64, 4, 3), KernelConfig(16, 32, 32, 8, 2, False)],
    ids=lambda c: f"{c.block_m}x{c.block_n}x{c.block_k}{'' if c.l1_corners else '-l2'}",
)
def test_other_tile_configs_match_onnxruntime(config):
    """The tiles ``benchmarks/dcn_triton_configs.py`` may pick instead of the default."""
    arrays = _case(2, 70, 7, 9, 37, 3, (1, 1), (1, 1), (1, 1), 3.0, seed=4)
    expected = ort_deform_conv(*arrays, 1, 1, 1, 1)
    x, offset, mask, weight, bias = (torch.from_numpy(a) for a in arrays)
    x = x.contiguous(memory_format=torch.channels_last)
    got = launch(_deform_conv2d_kernel, x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1), config).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6 * float(np.abs(expected).max()))


def test_nchw_input_and_an_empty_batch():
    """Contiguous (NCHW) input is read as channels-last after one copy; a batch of 0 gives 0 rows."""
    arrays = _case(2, 20, 7, 9, 19, 3, (1, 1), (1, 1), (1, 1), 3.0, seed=6)
    x, offset, mask, weight, bias = (torch.from_numpy(a) for a in arrays)
    got = deform_conv2d_triton(x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1))
    expected = ort_deform_conv(*arrays, 1, 1, 1, 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=2e-6 * float(np.abs(expected).max()))
    empty = deform_conv2d_triton(x[:0], offset[:0], mask[:0], weight, bias, (1, 1), (1, 1), (1, 1))
    assert tuple(empty.shape) == (0, 19, 7, 9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_the_widest_centernet_layer_with_its_default_tiles(dtype):
    """512 -> 256 channels (the first DCN layer's widths) on an 8x8 map: full tiles, 8 or 16 chunks per tap."""
    arrays = _case(1, 512, 8, 8, 256, 3, (1, 1), (1, 1), (1, 1), 2.0, seed=7)
    if dtype == torch.float16:
        arrays = tuple(a.astype(np.float16).astype(np.float32) for a in arrays)
    expected = ort_deform_conv(*arrays, 1, 1, 1, 1)
    got = _run(arrays, (1, 1), (1, 1), (1, 1), dtype=dtype)
    error = float(np.abs(got - expected).max())
    tolerance = (1e-5 if dtype == torch.float32 else 4e-3) * float(np.abs(expected).max())
    assert error < tolerance, f"{error:.3g} off ONNX Runtime (tolerance {tolerance:.3g})"
