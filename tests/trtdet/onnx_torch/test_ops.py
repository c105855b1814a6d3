"""Op by op: one- or few-node ONNX graphs, converted and compared with onnxruntime at batch 1 and 3."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from .helpers import assert_matches_onnxruntime, make_model, random_feeds

rng = np.random.default_rng(42)


def _w(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _check(nodes, inputs, outputs=("y",), *, initializers=None, opset=17, batches=(1, 3), **tolerance):
    model = make_model(nodes, inputs, outputs, initializers=initializers, opset=opset)
    for batch in batches:
        assert_matches_onnxruntime(model, random_feeds(inputs, batch, seed=batch), **tolerance)


# -- convolution ------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
    dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2]),
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
    dict(kernel_shape=[3, 3], pads=[0, 1, 1, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[1, 1]),
], ids=["pad1", "stride2", "dilation2", "groups4", "asymmetric", "same_upper", "same_lower", "1x1"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv(attrs, bias):
    groups = attrs.get("group", 1)
    k = attrs["kernel_shape"]
    inits = {"w": _w(8, 8 // groups, *k)}
    if bias:
        inits["b"] = _w(8)
    node = helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], **attrs)
    _check([node], {"x": (8, 11, 13)}, initializers=inits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]),
    dict(kernel_shape=[3, 3], strides=[1, 1], group=2),
], ids=["centernet_deconv", "output_padding", "asymmetric", "groups"])
def test_conv_transpose(attrs):
    groups = attrs.get("group", 1)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    _check([node], {"x": (4, 7, 9)}, initializers={"w": _w(4, 6 // groups, *attrs["kernel_shape"]), "b": _w(6)},
           rtol=1e-4, atol=1e-4)


# -- pooling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[1, 1], dilations=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
], ids=["sppf", "k3p1", "k2s2", "ceil", "ceil_pads", "asymmetric", "dilated", "same_upper"])
def test_max_pool(attrs):
    _check([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": (3, 10, 11)})


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(count_include_pad):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            count_include_pad=count_include_pad)
    _check([node], {"x": (3, 8, 9)})


def test_global_average_pool():
    _check([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {"x": (3, 8, 9)})


# -- resize -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("attrs", "scales", "sizes"), [
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), [1, 1, 2, 2], None),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), [1, 1, 3, 2], None),
    (dict(mode="nearest"), [1, 1, 0.5, 0.5], None),
    (dict(mode="nearest"), None, [0, 4, 13, 7]),
    (dict(mode="nearest", coordinate_transformation_mode="align_corners", nearest_mode="round_prefer_ceil"), None, [0, 4, 13, 7]),
    (dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="ceil"), [1, 1, 1.5, 2.5], None),
    (dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"), [1, 1, 2, 2], None),
    (dict(mode="linear", coordinate_transformation_mode="half_pixel"), [1, 1, 2, 2], None),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), None, [0, 4, 13, 7]),
    (dict(mode="linear", coordinate_transformation_mode="asymmetric"), [1, 1, 2, 3], None),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), None, [0, 4, 1, 10]),
    (dict(mode="linear", coordinate_transformation_mode="half_pixel"), [1, 1, 0.5, 0.75], None),
], ids=["ultralytics", "nearest_3x2", "nearest_down", "nearest_sizes", "nearest_align", "nearest_ceil",
        "tf_half_pixel", "linear_up", "linear_align", "linear_asymmetric", "linear_pytorch", "linear_down"])
def test_resize(attrs, scales, sizes):
    inits = {}
    inputs = ["x", ""]
    if scales is not None:
        inits["scales"] = np.array(scales, np.float32)
        inputs.append("scales")
    else:
        inputs += ["", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    inputs_shape = {"x": (4, 6, 5)}
    if sizes is not None:
        # The batch entry of ``sizes`` names the batch at conversion; each batch gets its own graph.
        for batch in (1, 3):
            inits["sizes"] = np.array([batch, *sizes[1:]], np.int64)
            model = make_model([node], inputs_shape, ["y"], initializers=inits, opset=13)
            assert_matches_onnxruntime(model, random_feeds(inputs_shape, batch, seed=batch))
        return
    _check([node], inputs_shape, initializers=inits, opset=13)


def test_resize_opset11_with_roi_and_opset19_axes():
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    _check([node], {"x": (2, 4, 4)}, opset=11,
           initializers={"roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)})
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", axes=[2, 3])
    _check([node], {"x": (2, 4, 4)}, opset=19, initializers={"scales": np.array([2, 2], np.float32)})


# -- slicing and splitting --------------------------------------------------------------------

@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), [
    ([0], [2], [1], [1]),
    ([1], [9223372036854775807], [1], [1]),
    ([0, 1], [5, 7], [2, 3], [2, 3]),
    ([-1], [-9223372036854775807], [3], [-1]),
    ([4], [0], [-2], [-2]),
    ([-3, 1], [-1, 100], [-1, -3], [1, 1]),
    ([0], [9223372036854775807], [0], [1]),
], ids=["prefix", "to_end", "steps", "reverse", "negative_step", "negative_axes", "batch_axis"])
def test_slice(starts, ends, axes, steps):
    inits = {"s": np.array(starts), "e": np.array(ends), "a": np.array(axes), "t": np.array(steps)}
    _check([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], {"x": (4, 6, 8)}, initializers=inits)


def test_slice_opset9_attributes():
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, 5], axes=[1, 3])
    _check([node], {"x": (4, 6, 8)}, opset=9)


@pytest.mark.parametrize("case", ["sizes_input", "equal", "num_outputs_uneven", "attribute"])
def test_split(case):
    outputs = ["y0", "y1", "y2"]
    inits = {}
    opset = 17
    if case == "sizes_input":
        inits["split"] = np.array([2, 3, 1], np.int64)
        node = helper.make_node("Split", ["x", "split"], outputs, axis=1)
    elif case == "equal":
        node = helper.make_node("Split", ["x"], outputs, axis=-1)
    elif case == "num_outputs_uneven":
        node = helper.make_node("Split", ["x"], outputs, axis=1, num_outputs=3)
        opset = 18
    else:
        node = helper.make_node("Split", ["x"], outputs, axis=1, split=[1, 1, 4])
        opset = 11
    shape = {"x": (7 if case == "num_outputs_uneven" else 6, 3, 6)}
    _check([node], shape, outputs, initializers=inits, opset=opset)


# -- softmax, matmul, transpose ---------------------------------------------------------------

@pytest.mark.parametrize(("axis", "opset"), [(1, 13), (-1, 13), (2, 13), (1, 11), (-1, 11)])
def test_softmax(axis, opset):
    _check([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], {"x": (4, 5, 6)}, opset=opset)


@pytest.mark.parametrize("perm", [[0, 1, 3, 2], [0, 2, 1, 3], [0, 3, 1, 2], None])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    _check([helper.make_node("Transpose", ["x"], ["y"], **attrs)], {"x": (2, 3, 4)})


def test_matmul_batched_data_and_broadcast_weight():
    nodes = [helper.make_node("MatMul", ["a", "b"], ["ab"]), helper.make_node("MatMul", ["ab", "w"], ["y"])]
    _check(nodes, {"a": (2, 3, 4), "b": (2, 4, 5)}, initializers={"w": _w(5, 6)}, rtol=1e-4, atol=1e-4)


def test_gemm():
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=1)
    _check([helper.make_node("Flatten", ["x0"], ["x"]), node], {"x0": (3, 4)},
           initializers={"w": _w(5, 12), "c": _w(5)}, rtol=1e-4, atol=1e-4)


# -- elementwise, layout, reductions ----------------------------------------------------------

@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Greater", "Less"])
def test_binary_broadcast(op):
    nodes = [helper.make_node(op, ["x", "c"], ["y"])]
    _check(nodes, {"x": (3, 4, 5)}, initializers={"c": np.round(_w(1, 4, 1), 1)})


@pytest.mark.parametrize(("op", "attrs"), [
    ("Sigmoid", {}), ("Relu", {}), ("Tanh", {}), ("Exp", {}), ("Neg", {}), ("Abs", {}), ("Erf", {}),
    ("LeakyRelu", {"alpha": 0.1}), ("HardSigmoid", {"alpha": 0.2, "beta": 0.4}), ("HardSwish", {}),
    ("Elu", {"alpha": 0.7}), ("Softplus", {}), ("Floor", {}), ("Ceil", {}), ("Round", {}), ("Identity", {}),
])
def test_unary(op, attrs):
    _check([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (3, 4, 5)})


def test_sqrt_log_pow_of_positive_values():
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "one"], ["p"]),
             helper.make_node("Sqrt", ["p"], ["s"]), helper.make_node("Log", ["s"], ["l"]),
             helper.make_node("Pow", ["p", "e"], ["q"]), helper.make_node("Add", ["l", "q"], ["y"])]
    _check(nodes, {"x": (3, 4)}, initializers={"one": np.float32(1), "e": np.float32(1.5)})


def test_clip_where_cast():
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("Greater", ["x", "zero"], ["g"]),
             helper.make_node("Where", ["g", "c", "x"], ["w"]),
             helper.make_node("Cast", ["g"], ["gf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["w", "gf"], ["y"]),
             helper.make_node("Cast", ["x"], ["y_int"], to=TensorProto.INT64)]
    _check(nodes, {"x": (3, 4)}, ["y", "y_int"],
           initializers={"lo": np.float32(-0.5), "hi": np.float32(0.5), "zero": np.float32(0)})


def test_clip_opset6_attributes():
    _check([helper.make_node("Clip", ["x"], ["y"], min=-0.2, max=0.3)], {"x": (3, 4)}, opset=6)


def test_batch_normalization_and_relu():
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    _check(nodes, {"x": (4, 5, 6)}, initializers={"s": _w(4), "b": _w(4), "m": _w(4),
                                                  "v": np.abs(_w(4)) + 0.1}, rtol=1e-4, atol=1e-5)


def test_layout_ops():
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),           # [N, 4, 6] with 0 and -1
        helper.make_node("Unsqueeze", ["r", "ax1"], ["u"]),            # [N, 1, 4, 6]
        helper.make_node("Squeeze", ["u", "ax1"], ["sq"]),             # [N, 4, 6]
        helper.make_node("Flatten", ["sq"], ["f"], axis=1),            # [N, 24]
        helper.make_node("Concat", ["f", "f"], ["c"], axis=-1),        # [N, 48]
        helper.make_node("Gather", ["c", "idx"], ["g"], axis=1),       # [N, 2, 2]
        helper.make_node("Gather", ["c", "i0"], ["g0"], axis=1),       # [N]
        helper.make_node("Expand", ["g", "eshape"], ["e"]),            # [N, 2, 2] -> [3, N?]: broadcast
        helper.make_node("Tile", ["sq", "reps"], ["t"]),               # [N, 8, 6]
        helper.make_node("Pad", ["t", "pads"], ["y"], mode="constant"),
        helper.make_node("ReduceMean", ["sq"], ["m"], axes=[2], keepdims=1),
        helper.make_node("ReduceMax", ["sq"], ["mx"], axes=[1], keepdims=0),
        helper.make_node("ReduceSum", ["sq", "ax1"], ["sm"], keepdims=1),
        helper.make_node("ArgMax", ["sq"], ["am"], axis=2, keepdims=0),
    ]
    inits = {
        "shape": np.array([0, 4, -1]), "ax1": np.array([1]), "idx": np.array([[0, 5], [-1, 7]]), "i0": np.array(3),
        "eshape": np.array([1, 2, 2]), "reps": np.array([1, 2, 1]), "pads": np.array([0, 1, 2, 0, 0, 1]),
    }
    _check(nodes, {"x": (2, 12)}, ["y", "m", "mx", "sm", "am", "g0", "e"], initializers=inits, opset=13)


def test_pad_modes():
    for mode in ("reflect", "edge"):
        node = helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)
        _check([node], {"x": (3, 5, 6)}, initializers={"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1])})


def test_constant_nodes_and_initializer_casts_fold():
    value = helper.make_tensor("v", TensorProto.FLOAT16, [4], np.array([1, 2, 3, 4], np.float16).tobytes(), raw=True)
    nodes = [helper.make_node("Constant", [], ["c16"], value=value),
             helper.make_node("Cast", ["c16"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x", "w"], ["conv"], kernel_shape=[1, 1]),
             helper.make_node("Constant", [], ["k"], value_float=0.5),
             helper.make_node("Mul", ["conv", "k"], ["mk"]),
             helper.make_node("Reshape", ["c", "s"], ["c4"]),
             helper.make_node("Add", ["mk", "c4"], ["y"])]
    inits = {"w16": _w(4, 3, 1, 1).astype(np.float16), "s": np.array([1, 4, 1, 1])}
    _check(nodes, {"x": (3, 5, 5)}, initializers=inits, opset=19)


# -- shape arithmetic that follows the batch --------------------------------------------------

def test_shape_arithmetic_follows_the_batch():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Range and ConstantOfShape of the batch."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "two"], ["h"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        helper.make_node("Mul", ["h", "three"], ["h3"]),
        helper.make_node("Unsqueeze", ["h3", "axes0"], ["h31"]),
        helper.make_node("Concat", ["b1", "minus1", "h31"], ["target"], axis=0),
        helper.make_node("Div", ["h", "h"], ["one"]),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Range", ["zero_f", "bf", "one_f"], ["r"]),
        helper.make_node("ConstantOfShape", ["b1"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("Add", ["r", "ones"], ["rb"]),
        helper.make_node("Shape", ["x"], ["tail"], start=-2),
        helper.make_node("Expand", ["one_row", "tail"], ["ex"]),
        helper.make_node("Slice", ["shape", "zero1", "one1"], ["bslice"]),
        helper.make_node("Concat", ["bslice", "tail"], ["full"], axis=0),
        helper.make_node("Expand", ["one_row", "full"], ["ex_b"]),
    ]
    inits = {"zero": np.array(0), "two": np.array(2), "three": np.array(3), "axes0": np.array([0]),
             "minus1": np.array([-1]), "zero_f": np.float32(0), "one_f": np.float32(1),
             "one_row": np.ones((1, 1), np.float32), "zero1": np.array([0]), "one1": np.array([1])}
    _check(nodes, {"x": (4, 3, 6)}, ["y", "rb", "ex", "ex_b"], initializers=inits, opset=15, batches=(1, 2, 5))


# -- end-to-end heads (YOLO26/YOLOv10 nms=False, RT-DETR) -------------------------------------

@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("axis", [1, -1])
def test_topk(axis, largest):
    """Values and int64 indices, sorted, as the end-to-end heads pick their 300 candidates."""
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest, sorted=1)
    _check([node], {"x": (37, 5)}, outputs=("values", "indices"),
           initializers={"k": np.array([4], np.int64)}, rtol=0, atol=0)


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_grid_sample(padding, align):
    """RT-DETR's deformable attention samples its value maps with GridSample (bilinear)."""
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode="bilinear", padding_mode=padding, align_corners=align)
    # the grid's standard-normal points fall inside and outside [-1, 1], so the padding is exercised
    _check([node], {"x": (3, 8, 9), "g": (6, 5, 2)}, opset=16, rtol=1e-5, atol=1e-5)


def test_clip_of_a_length_keeps_it_an_integer():
    """RT-DETR clips a sequence length (int64) to 300 before reshaping by it: the bound must not
    turn the length into a float (it did: the Reshape then failed)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
        helper.make_node("Clip", ["length", "", "most"], ["clipped"]),
        helper.make_node("Unsqueeze", ["clipped", "zero"], ["dim"]),
        helper.make_node("Concat", ["minus_one", "dim"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"one": np.array(1, np.int64), "most": np.array(4, np.int64), "zero": np.array([0], np.int64),
             "minus_one": np.array([-1], np.int64)}
    _check(nodes, {"x": (4, 6)}, initializers=inits, rtol=0, atol=0)


def test_integer_division_by_a_constant_truncates_and_exports_the_divisor_as_an_int():
    """TopK index // classes (the end-to-end heads): ONNX's integer Div truncates toward zero
    (negative values too); the constant divisor reaches torch.export as a Python int, which keeps
    Inductor's quotient integral (a 0-d tensor divisor came out float on CUDA with torch 2.11)."""
    import torch
    from onnx import numpy_helper

    from trtdet.onnx_torch import convert

    from .helpers import ort_run, torch_run

    nodes = [helper.make_node("Div", ["x", "five"], ["q"]), helper.make_node("Div", ["x", "neg"], ["r"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 6])],
                              [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", 6]) for n in ("q", "r")],
                              [numpy_helper.from_array(np.array(5, np.int64), "five"),
                               numpy_helper.from_array(np.array(-3, np.int64), "neg")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.array([[-11, -5, -1, 0, 7, 23], [1499, 1500, 4, -4, 9, -9]], np.int64)
    module = convert(model, converters={})
    for got, want in zip(torch_run(module, {"x": x}), ort_run(model, {"x": x}), strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    program = torch.export.export(module, (torch.from_numpy(x),), strict=False)
    divisors = [n.args[1] for n in program.graph.nodes if n.op == "call_function" and "div" in str(n.target)]
    assert divisors == [5, -3]
