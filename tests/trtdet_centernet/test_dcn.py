"""DCNv2: the pure-torch forward against ONNX Runtime's DeformConv and a grid_sample reference."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from trtdet_centernet.dcn import DCNv2, modulated_deform_conv
from trtdet_centernet.dcn_gather import deform_conv2d_gather

from . import upstream_reference as upstream


def ort_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, groups):
    """ONNX Runtime's DeformConv (opset 19) on numpy inputs."""
    kh, kw = weight.shape[2:]
    node = helper.make_node(
        "DeformConv",
        ["X", "W", "O", "B", "M"],
        ["Y"],
        kernel_shape=[kh, kw],
        strides=[stride, stride],
        pads=[padding] * 4,
        dilations=[dilation, dilation],
        group=1,
        offset_group=groups,
    )
    arrays = dict(zip("XWOBM", (x, weight, offset, bias, mask), strict=True))
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in arrays.items()]
    graph = helper.make_graph(
        [node], "dcn", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, arrays)[0]


CASES = [
    # (stride, padding, dilation, deformable_groups, kernel, offset scale)
    pytest.param(1, 1, 1, 1, 3, 2.0, id="plain"),
    pytest.param(2, 1, 1, 1, 3, 2.0, id="stride2"),
    pytest.param(1, 2, 2, 1, 3, 2.0, id="dilation2"),
    pytest.param(1, 1, 1, 2, 3, 2.0, id="groups2"),
    pytest.param(2, 2, 2, 2, 3, 6.0, id="all-far-outside"),
    pytest.param(1, 0, 1, 1, 1, 1.5, id="kernel1"),
]


def random_case(stride, padding, dilation, groups, kernel, scale):
    rng = np.random.default_rng(stride * 100 + dilation * 10 + groups)
    batch, channels, height, width, out_ch = 2, 4, 7, 9, 5
    out_h = (height + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    out_w = (width + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    taps = kernel * kernel
    x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
    offset = (rng.standard_normal((batch, 2 * groups * taps, out_h, out_w)) * scale).astype(np.float32)
    mask = rng.random((batch, groups * taps, out_h, out_w)).astype(np.float32)
    weight = rng.standard_normal((out_ch, channels, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(out_ch).astype(np.float32)
    # Some samples must leave the image for the border rule to be exercised.
    assert np.abs(offset).max() > max(height, width) / 4
    return x, offset, mask, weight, bias


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups", "kernel", "scale"), CASES)
def test_matches_onnxruntime_deform_conv(stride, padding, dilation, groups, kernel, scale):
    arrays = random_case(stride, padding, dilation, groups, kernel, scale)
    expected = ort_deform_conv(*arrays, stride, padding, dilation, groups)
    tensors = [torch.from_numpy(a) for a in arrays]
    got = modulated_deform_conv(*tensors, stride, padding, dilation, groups).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups", "kernel", "scale"), CASES)
def test_channels_last_gather_version_matches_onnxruntime(stride, padding, dilation, groups, kernel, scale):
    """The CUDA formulation (run here on the CPU): same ops, channels-last input, NHWC output strides."""
    arrays = random_case(stride, padding, dilation, groups, kernel, scale)
    expected = ort_deform_conv(*arrays, stride, padding, dilation, groups)
    x, offset, mask, weight, bias = (torch.from_numpy(a) for a in arrays)
    x = x.contiguous(memory_format=torch.channels_last)
    got = deform_conv2d_gather(x, offset, mask, weight, bias, (stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    assert got.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_border_rule_on_a_hand_computed_case():
    """A 1x1 kernel sampling at y = -0.5 reads half of row 0; at y <= -1 or >= H it reads zero."""
    x = torch.arange(1.0, 7.0).view(1, 1, 2, 3)  # rows [1,2,3], [4,5,6]
    weight, bias = torch.ones(1, 1, 1, 1), torch.zeros(1)
    mask = torch.ones(1, 1, 2, 3)
    offset = torch.zeros(1, 2, 2, 3)
    offset[0, 0, 0, 1] = -0.5  # (0, 1) samples y = -0.5: 0.5 * x[0, 1] = 1.0
    offset[0, 0, 1, 0] = -2.0  # (1, 0) samples y = -1: nothing
    offset[0, 1, 1, 2] = 0.25  # (1, 2) samples x = 2.25: 0.75 * x[1, 2] = 4.5
    offset[0, 0, 0, 2] = 1.0  # (0, 2) samples y = 1: x[1, 2] = 6
    got = modulated_deform_conv(x, offset, mask, weight, bias, 1, 0, 1, 1)
    assert got[0, 0].tolist() == [[1.0, 1.0, 6.0], [0.0, 5.0, 4.5]]


def test_module_has_upstream_parameters_and_semantics():
    torch.manual_seed(0)
    ours = DCNv2(6, 4, 3, stride=1, padding=1, deformable_groups=2)
    assert sorted(n for n, _ in ours.named_parameters()) == [
        "bias",
        "conv_offset_mask.bias",
        "conv_offset_mask.weight",
        "weight",
    ]
    assert ours.conv_offset_mask.out_channels == 3 * 2 * 9
    # Upstream init: no offset, mask sigmoid(0) = 0.5, zero bias.
    assert not ours.conv_offset_mask.weight.any() and not ours.bias.any()

    reference = upstream.DCN(6, 4, (3, 3), stride=1, padding=1, deformable_groups=2)
    upstream.randomize_(reference, seed=3, offset_std=0.3)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 8, 10)
    with torch.no_grad():
        np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-5)


def test_offset_and_mask_equal_upstream_chunk_cat_sigmoid():
    module = DCNv2(3, 2, 3, deformable_groups=2)
    torch.nn.init.normal_(module.conv_offset_mask.weight)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        o1, o2, m = torch.chunk(module.conv_offset_mask(x), 3, dim=1)
        offset, mask = module.offset_and_mask(x)
    assert torch.equal(offset, torch.cat((o1, o2), dim=1))
    assert torch.equal(mask, torch.sigmoid(m))


def test_bad_geometry_is_reported():
    x = torch.zeros(1, 4, 6, 6)
    with pytest.raises(ValueError, match="offset/mask: expected"):
        modulated_deform_conv(
            x, torch.zeros(1, 18, 5, 5), torch.zeros(1, 9, 5, 5), torch.zeros(2, 4, 3, 3), None
        )


def test_channels_last_gather_version_exports_with_a_dynamic_batch():
    """What the inductor backend does with it on CUDA, here on the CPU: ``torch.export`` with a
    dynamic batch, then the exported program on another batch size equals ONNX Runtime."""
    arrays = random_case(1, 1, 1, 1, 3, 2.0)
    x, offset, mask, weight, bias = (torch.from_numpy(a) for a in arrays)

    class Layer(torch.nn.Module):
        def forward(self, x, offset, mask):
            return deform_conv2d_gather(x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1), 1)

    batch = torch.export.Dim("batch", min=1, max=8)
    exported = torch.export.export(Layer(), (x, offset, mask), dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
    three = [np.concatenate([a, a[:1]]) for a in arrays[:3]]
    got = exported.module()(*(torch.from_numpy(a) for a in three)).numpy()
    expected = ort_deform_conv(*three, arrays[3], arrays[4], 1, 1, 1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
