"""The DCNv2 TensorRT plugin, as far as the installed bindings allow without running a network.

TensorRT-RTX (the CI's TensorRT) registers Python plugin creators and creates plugins from
Python, but its ONNX parser aborts the process when it creates a Python plugin, so
network-level tests need NVIDIA TensorRT and skip without it. The enqueue (the CUDA kernel
call) cannot run anywhere here: the kernel itself is tested in the kernels' tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtdet_centernet.tensorrt.plugin import (
    FIELDS,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    parse_fields,
    plugin_classes,
    register_dcn_plugin,
)
from trtdet_centernet.tensorrt.rewrite import deform_conv_to_plugin, rewrite_dcn

_keep_alive: list[np.ndarray] = []


def _fields(trt, **values):
    arrays = {name: np.asarray(v, dtype=np.int32) for name, v in values.items()}
    _keep_alive.extend(arrays.values())  # PluginField does not own its array
    return trt.PluginFieldCollection(
        [trt.PluginField(name, array, trt.PluginFieldType.INT32) for name, array in arrays.items()]
    )


def test_creator_registration_is_idempotent(rtx):
    assert register_dcn_plugin(rtx) == (PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    assert register_dcn_plugin(rtx) == (PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    creator = rtx.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    assert creator is not None
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == (PLUGIN_NAME, "1", "trtdet")
    assert [f.name for f in creator.field_names] == list(FIELDS)


@pytest.mark.parametrize("phase", ["BUILD", "RUNTIME"])
def test_create_plugin_in_both_phases_and_fields_round_trip(rtx, phase):
    register_dcn_plugin(rtx)
    creator = rtx.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    given = _fields(rtx, stride=[2, 1], padding=[2, 0], dilation=[2, 3], deformable_groups=[4], with_mask=[0])
    plugin = creator.create_plugin("dcn0", given, getattr(rtx.TensorRTPhase, phase))
    expected = {
        "stride": (2, 1),
        "padding": (2, 0),
        "dilation": (2, 3),
        "deformable_groups": (4,),
        "with_mask": (0,),
    }
    assert plugin.values == expected
    assert (plugin.plugin_name, plugin.plugin_version, plugin.plugin_namespace) == (
        PLUGIN_NAME,
        "1",
        "trtdet",
    )
    assert plugin.num_outputs == 1
    serialised = plugin.get_fields_to_serialize()
    assert {f.name: np.asarray(f.data).tolist() for f in serialised} == {
        k: list(v) for k, v in expected.items()
    }
    # Deserialisation creates the plugin from exactly the serialised fields.
    again = creator.create_plugin("dcn0", serialised, rtx.TensorRTPhase.RUNTIME)
    assert again.values == expected and again.clone().values == expected
    assert plugin.get_capability_interface(rtx.PluginCapabilityType.RUNTIME) is plugin


def test_missing_fields_take_defaults_and_scalars_broadcast(rtx):
    assert parse_fields(None) == FIELDS
    assert parse_fields(_fields(rtx, stride=[2]))["stride"] == (2, 2)
    with pytest.raises(ValueError, match="deformable_groups"):
        parse_fields(_fields(rtx, deformable_groups=[1, 2, 3]))


@pytest.mark.parametrize("dtype", ["FLOAT", "HALF"])
def test_output_type_and_formats(rtx, dtype):
    plugin = plugin_classes(rtx)[0]()
    data_type = getattr(rtx.DataType, dtype)
    assert plugin.get_output_data_types([data_type] * 5) == [data_type]

    def desc(kind, fmt=rtx.TensorFormat.LINEAR):
        tensor = rtx.DynamicPluginTensorDesc()
        inner = rtx.PluginTensorDesc()
        inner.type, inner.format = kind, fmt
        tensor.desc = inner
        return tensor

    same = [desc(data_type) for _ in range(6)]
    assert all(plugin.supports_format_combination(pos, same, 5) for pos in range(6))
    mixed = [desc(data_type)] + [desc(rtx.DataType.INT32)] * 5
    assert not plugin.supports_format_combination(1, mixed, 5)
    assert not plugin.supports_format_combination(0, [desc(rtx.DataType.INT8)] * 6, 5)
    assert not plugin.supports_format_combination(0, [desc(data_type, rtx.TensorFormat.CHW32)] * 6, 5)


def _deform_conv_model(mask: bool, bias: bool) -> onnx.ModelProto:
    inputs = ["x", "w", "offset", "b" if bias else "", "mask" if mask else ""]
    while inputs[-1] == "":
        inputs.pop()
    node = helper.make_node(
        "DeformConv",
        inputs,
        ["y"],
        name="dcn",
        strides=[2, 2],
        dilations=[1, 2],
        pads=[1, 2, 1, 2],
        offset_group=2,
    )
    value_infos = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 16, 16]),
        helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["N", 36, 8, 8]),
    ] + ([helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 18, 8, 8])] if mask else [])
    initializers = [numpy_helper.from_array(np.ones((5, 4, 3, 3), np.float32), "w")]
    if bias:
        initializers.append(numpy_helper.from_array(np.ones(5, np.float32), "b"))
    graph = helper.make_graph(
        [node],
        "g",
        value_infos,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 8, 8])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize(("mask", "bias"), [(True, True), (False, False)])
def test_rewrite_to_plugin_node(mask, bias):
    rewritten = deform_conv_to_plugin(_deform_conv_model(mask, bias))
    (node,) = rewritten.graph.node
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == PLUGIN_NAME and node.domain == PLUGIN_NAMESPACE
    assert attrs["stride"] == [2, 2] and attrs["padding"] == [1, 2] and attrs["dilation"] == [1, 2]
    assert attrs["deformable_groups"] == 2 and attrs["with_mask"] == int(mask)
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"trtdet"
    assert list(node.input[:3]) == ["x", "w", "offset"] and len(node.input) == 4 + int(mask)
    bias_name = node.input[3]
    bias_value = next(numpy_helper.to_array(i) for i in rewritten.graph.initializer if i.name == bias_name)
    np.testing.assert_array_equal(bias_value, np.ones(5) if bias else np.zeros(5))
    assert rewrite_dcn(_deform_conv_model(mask, bias), "builtin").graph.node[0].op_type == "DeformConv"


def test_rtx_parser_looks_up_the_plugin_by_op_type(rtx, tmp_path):
    """Without a registered creator the parser reports the missing plugin (run apart: a Python
    plugin creator registered in this process would make TensorRT-RTX's parser abort)."""
    path = tmp_path / "plugin.onnx"
    onnx.save(deform_conv_to_plugin(_deform_conv_model(True, True)), str(path))
    script = textwrap.dedent(
        f"""
        import tensorrt_rtx_bindings as trt
        logger = trt.Logger(trt.Logger.ERROR)
        network = trt.Builder(logger).create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert not parser.parse_from_file({str(path)!r})
        error = parser.get_error(0)
        print("RESULT", error.node_operator(), error.node_name(), error.desc())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = done.stdout[done.stdout.index("RESULT ") :]
    assert result.startswith(f"RESULT {PLUGIN_NAME} dcn "), done.stdout
    assert "Plugin not found" in result


def _full_tensorrt():
    from trtdet.engines.tensorrt.flavour import flavour_by_name

    flavour = flavour_by_name("tensorrt")
    if flavour is None or not flavour.supports_python_plugins:
        pytest.skip(
            "needs NVIDIA TensorRT >= 10 (Python plugins in the ONNX parser); only TensorRT-RTX is installed"
        )
    return flavour.module


def test_plugin_network_shapes_across_batches():
    """Network level, full TensorRT only: the parser creates the plugin, output shapes follow the inputs."""
    trt = _full_tensorrt()
    register_dcn_plugin(trt)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(deform_conv_to_plugin(_deform_conv_model(True, True)).SerializeToString())
    assert tuple(network.get_output(0).shape) == (-1, 5, 8, 8)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, shape in (("x", (4, 16, 16)), ("offset", (36, 8, 8)), ("mask", (18, 8, 8))):
        profile.set_shape(name, (1, *shape), (2, *shape), (4, *shape))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


_ENQUEUE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, onnx, onnxruntime as ort
    import tensorrt_rtx_bindings as trt
    from onnx import helper, numpy_helper
    from trtdet_centernet.tensorrt.plugin import plugin_classes

    with_mask = bool(int(sys.argv[1]))
    rng = np.random.default_rng(3)
    n, c, h, w, co, g = 2, 4, 9, 10, 3, 2
    stride, pad, dil = (2, 1), (1, 2), (1, 2)
    oh = (h + 2 * pad[0] - (dil[0] * 2 + 1)) // stride[0] + 1
    ow = (w + 2 * pad[1] - (dil[1] * 2 + 1)) // stride[1] + 1
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((co, c, 3, 3)).astype(np.float32)
    offset = (rng.standard_normal((n, 2 * g * 9, oh, ow)) * 3).astype(np.float32)
    mask = rng.random((n, g * 9, oh, ow)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    out = np.zeros((n, co, oh, ow), np.float32)

    values = {"stride": stride, "padding": pad, "dilation": dil, "deformable_groups": (g,), "with_mask": (int(with_mask),)}
    plugin = plugin_classes(trt)[0](values)
    def desc(array):
        d = trt.PluginTensorDesc()
        d.dims, d.type, d.format = trt.Dims(array.shape), trt.DataType.FLOAT, trt.TensorFormat.LINEAR
        return d
    def dynamic(array):
        d = trt.DynamicPluginTensorDesc()
        d.desc, d.min, d.opt, d.max = desc(array), trt.Dims(array.shape), trt.Dims(array.shape), trt.Dims(array.shape)
        return d
    inputs = [x, weight, offset, bias] + ([mask] if with_mask else [])
    workspace = np.zeros(plugin.get_workspace_size([dynamic(a) for a in inputs], [dynamic(out)]), np.uint8)
    plugin.enqueue([desc(a) for a in inputs], [desc(out)], [a.ctypes.data for a in inputs], [out.ctypes.data],
                   workspace.ctypes.data, 0)

    names = ["x", "w", "offset", "b"] + (["mask"] if with_mask else [])
    node = helper.make_node("DeformConv", names, ["y"], strides=list(stride), pads=[*pad, *pad],
                            dilations=list(dil), offset_group=g, kernel_shape=[3, 3])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, 1, None) for k in ("x", "offset", "mask")][: 3 if with_mask else 2],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    feeds = {"x": x, "offset": offset, **({"mask": mask} if with_mask else {})}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    print("RESULT", json.dumps({"max_error": float(np.abs(out - expected).max()), "scale": float(np.abs(expected).max())}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("with_mask", [True, False])
def test_enqueue_runs_the_dcn_kernel_like_deform_conv(rtx, with_mask):
    """The plugin's enqueue glue (argument order, workspace layout, ones-mask) under numba's CUDA
    simulator, with host pointers standing in for device pointers, against ONNX Runtime's DeformConv."""
    import json
    import os

    pytest.importorskip("torch")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _ENQUEUE_SCRIPT, str(int(with_mask))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("RESULT ") + 7 :])
    assert result["scale"] > 1.0
    assert result["max_error"] < 1e-4 * result["scale"], result
