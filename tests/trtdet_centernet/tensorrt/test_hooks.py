"""CenterNet's ``dcn`` build step, found the way the core finds it (the ``trtdet_build_steps`` hook)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtdet.plugins import get_model, list_build_steps, load_plugins
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


def _dcn_step():
    """The ``dcn`` step as the core finds it: registered through the ``trtdet_build_steps`` hook."""
    steps = list_build_steps()
    assert steps["dcn"].plugin == "centernet_tensorrt"
    return steps["dcn"].step


def test_build_steps_hook_registers_the_dcn_step():
    from trtdet_centernet.tensorrt import hooks

    load_plugins()
    registered = []
    hooks.trtdet_build_steps(register=registered.append)  # this plugin's own implementation
    assert [step.name for step in registered] == ["dcn"]
    assert registered[0].choices == ("auto", "builtin", "plugin", "decomposed") and registered[0].default == "auto"


@pytest.mark.parametrize(
    ("dcn", "expected_op"), [("decomposed", "GridSample"), ("plugin", PLUGIN_NAME), ("builtin", "DeformConv")]
)
def test_rewrite_hook_lowers_deform_conv(dcn, expected_op):
    step = _dcn_step()
    spec = get_model("centernet").spec
    original = _model(with_dcn=True)
    assert step.applies(original, spec)
    rewritten = step.rewrite(original, spec, dcn)
    assert expected_op in {n.op_type for n in rewritten.graph.node}
    assert "DeformConv" in {n.op_type for n in original.graph.node}  # the input is left untouched


def test_rewrite_hook_answers_none_without_dcn():
    step = _dcn_step()
    assert not step.applies(_model(with_dcn=False), get_model("centernet").spec)
    # The step belongs to CenterNet: another model's deformable convolutions are not its business.
    assert not step.applies(_model(with_dcn=True), get_model("yolo").spec)


def _runtime(module, name):
    from trtdet.engines.tensorrt.flavour import Flavour

    return Flavour(name, module).runtime_info()


def test_prepare_hook_offers_no_python_plugin_to_tensorrt_rtx(rtx):
    assert _dcn_step().prepare("plugin", _runtime(rtx, "rtx")).creators == ()
    assert _dcn_step().resolve("auto", _runtime(rtx, "rtx")) == "decomposed"


def test_prepare_hook_registers_the_creator_for_tensorrt(rtx):
    # The RTX module stands in for NVIDIA TensorRT here: the plugin registry API is the same.
    from trtdet.contracts.build_steps import RuntimeInfo

    tensorrt = RuntimeInfo("tensorrt", "10.13.0", "TensorRT 10.13.0", python_plugins=True, module=rtx)
    offered = hooks.DCN_STEP.prepare("plugin", tensorrt)
    assert offered.creators == ((PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE),)
    assert rtx.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
    assert hooks.DCN_STEP.prepare("builtin", tensorrt).plugin_library
    assert hooks.DCN_STEP.resolve("auto", tensorrt) == "builtin"


def test_a_build_step_name_registered_twice_names_both_plugins():
    from dataclasses import replace

    from trtdet.errors import UsageError
    from trtdet.hookspecs import hookimpl
    from trtdet.plugins import register_plugin, unregister_plugin

    class Twice:
        @hookimpl
        def trtdet_build_steps(self, register):
            register(replace(hooks.DCN_STEP, models=("other",)))

    register_plugin(Twice(), "twice-build-step")
    try:
        with pytest.raises(UsageError, match=r"build step 'dcn' is registered twice: by '.*' and by '.*'") as info:
            list_build_steps()
        assert "twice-build-step" in str(info.value) and "centernet_tensorrt" in str(info.value)
    finally:
        unregister_plugin("twice-build-step")
    assert list_build_steps()["dcn"].plugin == "centernet_tensorrt"
