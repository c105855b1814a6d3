"""CenterNet's ONNX DeformConv module (trtdet.onnx_torch converter) against onnxruntime's DeformConv."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from trtdet_centernet.onnx_torch import DeformConvModule


def _deform_conv_onnx(stride: int, dilation: int, groups: int) -> onnx.ModelProto:
    node = helper.make_node(
        "DeformConv",
        ["x", "w", "offset", "b", "mask"],
        ["y"],
        strides=[stride, stride],
        pads=[dilation, dilation, dilation, dilation],
        dilations=[dilation, dilation],
        offset_group=groups,
        kernel_shape=[3, 3],
    )
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "w", "offset", "b", "mask")
    ]
    graph = helper.make_graph(
        [node], "dcn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize(("stride", "dilation", "groups"), [(1, 1, 1), (2, 1, 2), (1, 2, 1)])
def test_module_equals_onnxruntime_deform_conv(stride, dilation, groups):
    rng = np.random.default_rng(stride * 10 + dilation + groups)
    x = rng.standard_normal((1, 4, 9, 11)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ho = (9 + 2 * dilation - 2 * dilation - 1) // stride + 1
    wo = (11 + 2 * dilation - 2 * dilation - 1) // stride + 1
    offset = (3 * rng.standard_normal((1, 2 * groups * 9, ho, wo))).astype(np.float32)  # crosses the border
    mask = rng.uniform(0, 1, (1, groups * 9, ho, wo)).astype(np.float32)
    session = ort.InferenceSession(_deform_conv_onnx(stride, dilation, groups).SerializeToString())
    (expected,) = session.run(None, {"x": x, "w": w, "offset": offset, "b": b, "mask": mask})
    module = DeformConvModule([stride, stride], [dilation, dilation], [dilation, dilation], groups)
    got = module(*(torch.from_numpy(a) for a in (x, w, offset, b, mask))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
