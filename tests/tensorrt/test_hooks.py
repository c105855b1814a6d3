"""CenterNet's TensorRT hooks, called the way the core calls them (through the plugin manager)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtdet.plugins import get_model, load_plugins
from trtdet_centernet.tensorrt import hooks
from trtdet_centernet.tensorrt.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

pytestmark = pytest.mark.usefixtures("tensorrt_plugins")


def _model(with_dcn: bool) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 2, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 8, 8])
    inits = [numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")]
    if with_dcn:
        inits.append(numpy_helper.from_array(np.zeros((18, 2, 3, 3), np.float32), "ow"))
        nodes = [
            helper.make_node("Conv", ["images", "ow"], ["offset"], pads=[1, 1, 1, 1]),
            helper.make_node(
                "DeformConv", ["images", "w", "offset"], ["output"], name="dcn", pads=[1, 1, 1, 1]
            ),
        ]
    else:
        nodes = [helper.make_node("Conv", ["images", "w"], ["output"], pads=[1, 1, 1, 1])]
    return helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 19)]
    )


@pytest.mark.parametrize(
    ("dcn", "expected_op"), [("decomposed", "GridSample"), ("plugin", PLUGIN_NAME), ("builtin", "DeformConv")]
)
def test_rewrite_hook_lowers_deform_conv(dcn, expected_op):
    pm = load_plugins()
    spec = get_model("centernet").spec
    original = _model(with_dcn=True)
    rewritten = pm.hook.trtdet_tensorrt_rewrite_onnx(model=spec, onnx_model=original, flavour="rtx", dcn=dcn)
    assert expected_op in {n.op_type for n in rewritten.graph.node}
    assert "DeformConv" in {n.op_type for n in original.graph.node}  # the input is left untouched


def test_rewrite_hook_answers_none_without_dcn():
    pm = load_plugins()
    result = pm.hook.trtdet_tensorrt_rewrite_onnx(
        model=get_model("yolo").spec, onnx_model=_model(with_dcn=False), flavour="rtx", dcn="decomposed"
    )
    assert result is None


def test_prepare_hook_offers_no_python_plugin_to_tensorrt_rtx(rtx):
    pm = load_plugins()
    assert pm.hook.trtdet_tensorrt_prepare(model=get_model("centernet").spec, trt=rtx, flavour="rtx") == []


def test_prepare_hook_registers_the_creator_for_tensorrt(rtx):
    # The RTX module stands in for NVIDIA TensorRT here: the plugin registry API is the same.
    offered = hooks.trtdet_tensorrt_prepare(model=get_model("centernet").spec, trt=rtx, flavour="tensorrt")
    assert offered == [(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)]
    assert rtx.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
