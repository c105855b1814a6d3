"""Bad input, the plugin hook, and the torch backend's ONNX path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import trtdet
from trtdet.errors import ModelError
from trtdet.onnx_torch import convert, plugin_converters, supported_ops

from .helpers import assert_matches_onnxruntime, make_model, random_feeds


def test_unsupported_op_is_one_line_naming_op_node_and_file(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first"),
             helper.make_node("Hardmax", ["r"], ["y"], name="the_hardmax")]
    path = tmp_path / "bad.onnx"
    onnx.save(make_model(nodes, {"x": (4,)}, ["y"]), path)
    with pytest.raises(ModelError) as info:
        convert(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "Hardmax" in message and "'the_hardmax'" in message


def test_unsupported_attribute_names_the_node():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rz", mode="cubic")
    model = make_model([node], {"x": (2, 4, 4)}, ["y"], initializers={"scales": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(ModelError, match=r"^<onnx model>: ONNX Resize node 'rz': mode 'cubic' is not supported$"):
        convert(model)


def test_sizes_read_from_data_are_refused():
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=onnx.TensorProto.INT64),
             helper.make_node("Reshape", ["x", "xi"], ["y"], name="data_reshape")]
    with pytest.raises(ModelError, match="'data_reshape'.*computed from tensor data"):
        convert(make_model(nodes, {"x": (2,)}, ["y"]))


def test_dynamic_spatial_size_needs_an_input_size(yolo_onnx):
    with pytest.raises(ModelError, match="dynamic dimensions.*give the input size"):
        convert(yolo_onnx)
    module = convert(yolo_onnx, input_size=(320, 256))
    assert module.input_shapes == {"images": (3, 320, 256)}


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelError, match="junk.onnx: not a readable ONNX file"):
        convert(path)


def test_plugins_register_converters_through_the_hook():
    assert "DeformConv" in plugin_converters()  # trtdet_centernet's trtdet_onnx_torch_ops
    ops = supported_ops()
    assert {"Conv", "Resize", "Split", "Slice", "Shape", "DeformConv"} <= set(ops)
    assert "DeformConv" not in supported_ops({})


def test_deform_conv_node_equals_onnxruntime():
    node = helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], offset_group=1)
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "b": rng.standard_normal(6).astype(np.float32)}
    inputs = {"x": (4, 7, 8), "offset": (18, 7, 8), "mask": (9, 7, 8)}
    model = make_model([node], inputs, ["y"], initializers=inits, opset=19)
    feeds = random_feeds(inputs, 2)
    feeds["mask"] = 1 / (1 + np.exp(-feeds["mask"]))
    assert_matches_onnxruntime(model, feeds, module=convert(model), rtol=1e-4, atol=1e-4)


def test_a_converter_can_be_given_directly():
    calls = []

    def hardmax(node):
        calls.append(node.name)
        axis = node.attr("axis", -1)
        return lambda x: torch.nn.functional.one_hot(torch.argmax(x, axis), x.shape[axis]).to(x.dtype)

    model = make_model([helper.make_node("Hardmax", ["x"], ["y"], name="hm")], {"x": (5,)}, ["y"])
    assert_matches_onnxruntime(model, random_feeds({"x": (5,)}, 3), module=convert(model, converters={"Hardmax": hardmax}))
    assert calls == ["hm"]


def test_shape_computations_fold_or_stay_python(yolo_onnx):
    """The anchors (Range/Expand/ConstantOfShape of the fixed H, W) fold to constants; what
    depends on the batch (Shape -> Gather -> Unsqueeze -> Concat) runs on Python ints."""
    module = convert(yolo_onnx, input_size=(640, 640))
    steps = [(op, getattr(fn, "shape_mode", False)) for (op, _name), (fn, *_rest) in zip(module._step_names, module._steps,
                                                                                       strict=True)]
    tensor_ops = {op for op, python in steps if not python}
    assert not tensor_ops & {"Shape", "Gather", "Unsqueeze", "Range", "ConstantOfShape", "Expand", "Cast"}, tensor_ops
    assert {op for op, python in steps if python} == {"Shape", "Gather", "Unsqueeze", "Concat"}


def test_torch_backend_runs_yolo_onnx_like_onnxruntime(yolo_onnx, photos):
    from trtdet.io.images import read_image

    image = read_image(photos["grace_hopper"])
    # square on both: the converted network has a fixed input size, so the torch backend runs square
    ours = trtdet.load("yolo", onnx=yolo_onnx, backend="torch", letterbox="square")
    judge = trtdet.load("yolo", onnx=yolo_onnx, backend="onnxruntime", letterbox="square")
    assert ours.backend == "torch"
    a, b = ours(image), judge(image)
    assert len(a) > 0 and len(a) == len(b)
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_a_plugin_implementing_the_hook_adds_an_op():
    from trtdet.hookspecs import hookimpl
    from trtdet.plugins import load_plugins

    class HardmaxPlugin:
        @hookimpl
        def trtdet_onnx_torch_ops(self, register):
            register("Hardmax", lambda node: lambda x: torch.nn.functional.one_hot(
                torch.argmax(x, -1), x.shape[-1]).to(x.dtype))

    pm = load_plugins()
    plugin = HardmaxPlugin()
    pm.register(plugin, name="test-hardmax")
    try:
        model = make_model([helper.make_node("Hardmax", ["x"], ["y"])], {"x": (5,)}, ["y"])
        assert_matches_onnxruntime(model, random_feeds({"x": (5,)}, 2), module=convert(model))
    finally:
        pm.unregister(plugin)
    assert "Hardmax" not in plugin_converters()
