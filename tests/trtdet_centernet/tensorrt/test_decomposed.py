"""The decomposed DCN (GridSample + mask + 1x1 Conv) equals ONNX Runtime's own DeformConv."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtdet_centernet.tensorrt.decomposed import decompose_deform_conv


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]


def _deform_conv_case(
    rng: np.random.Generator,
    *,
    batch=2,
    channels=8,
    size=(9, 11),
    out_channels=6,
    kernel=(3, 3),
    stride=(1, 1),
    dilation=(1, 1),
    pads=(1, 1, 1, 1),
    offset_group=1,
    group=1,
    mask=True,
    bias=True,
    offset_scale=4.0,
):
    (height, width), (kh, kw) = size, kernel
    out_h = (height + pads[0] + pads[2] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    out_w = (width + pads[1] + pads[3] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    taps = kh * kw
    feeds = {
        "x": rng.standard_normal((batch, channels, height, width)).astype(np.float32),
        # Offsets of several pixels push many samples across the border (zero padding matters).
        "offset": (rng.standard_normal((batch, 2 * offset_group * taps, out_h, out_w)) * offset_scale).astype(
            np.float32
        ),
    }
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, height, width]),
        helper.make_tensor_value_info(
            "offset", TensorProto.FLOAT, ["N", 2 * offset_group * taps, out_h, out_w]
        ),
    ]
    initializers = [
        numpy_helper.from_array(
            rng.standard_normal((out_channels, channels // group, kh, kw)).astype(np.float32), "w"
        )
    ]
    names = ["x", "w", "offset", "", ""]
    if bias:
        initializers.append(
            numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b")
        )
        names[3] = "b"
    if mask:
        feeds["mask"] = rng.random((batch, offset_group * taps, out_h, out_w)).astype(np.float32)
        inputs.append(
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", offset_group * taps, out_h, out_w])
        )
        names[4] = "mask"
    while names[-1] == "":
        names.pop()
    node = helper.make_node(
        "DeformConv",
        names,
        ["y"],
        name="dcn",
        strides=list(stride),
        dilations=list(dilation),
        pads=list(pads),
        offset_group=offset_group,
        group=group,
        kernel_shape=list(kernel),
    )
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_channels, out_h, out_w])
    graph = helper.make_graph([node], "dcn", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model, feeds


CASES = {
    "centernet_3x3": {},
    "stride2_dilation2_offset_groups2": {
        "stride": (2, 2),
        "dilation": (2, 2),
        "pads": (2, 2, 2, 2),
        "offset_group": 2,
    },
    "no_mask_no_bias": {"mask": False, "bias": False, "offset_group": 4},
    "mask_no_bias": {"bias": False},
    "asymmetric_kernel_stride_pads": {
        "kernel": (1, 3),
        "stride": (1, 2),
        "dilation": (1, 3),
        "pads": (0, 2, 1, 2),
    },
    "conv_groups2_offset_groups4": {"group": 2, "offset_group": 4},
    "huge_offsets_all_outside": {"offset_scale": 40.0},
}


@pytest.mark.parametrize("case", list(CASES))
def test_decomposed_equals_onnxruntime_deform_conv(case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    model, feeds = _deform_conv_case(rng, **CASES[case])
    decomposed = decompose_deform_conv(model)
    onnx.checker.check_model(decomposed)
    assert "DeformConv" not in {n.op_type for n in decomposed.graph.node}
    assert "GridSample" in {n.op_type for n in decomposed.graph.node}
    expected = _run(model, feeds)
    got = _run(decomposed, feeds)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)
    # The batch stays dynamic: one image through the same graph matches too.
    single = {name: value[:1] for name, value in feeds.items()}
    np.testing.assert_allclose(_run(decomposed, single), _run(model, single), rtol=1e-5, atol=2e-5)


def test_hand_computed_half_pixel_shift():
    """A 1x1 DeformConv with offset dx = 0.5 averages horizontal neighbours (last one with zero)."""
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    node = helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 4]),
            helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 2, 3, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 4])],
        [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    offset = np.zeros((1, 2, 3, 4), np.float32)
    offset[0, 1] = 0.5
    got = _run(decompose_deform_conv(model), {"x": x, "offset": offset})[0, 0]
    expected = (x[0, 0] + np.concatenate([x[0, 0, :, 1:], np.zeros((3, 1), np.float32)], axis=1)) / 2
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_model_without_deform_conv_is_returned_unchanged():
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    )
    assert decompose_deform_conv(model) is model


@pytest.mark.slow
def test_whole_centernet_export_decomposed_equals_standard(centernet_onnx):
    model = onnx.load(str(centernet_onnx))
    assert (
        sum(n.op_type == "DeformConv" for n in model.graph.node) == 3
    )  # ResDCN: one DCN per upsampling stage
    decomposed = decompose_deform_conv(model)
    batch = np.random.default_rng(0).standard_normal((2, 3, 128, 128)).astype(np.float32)
    expected = _run(model, {"images": batch})
    got = _run(decomposed, {"images": batch})
    assert expected.shape == (2, 32 * 32, 164)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert float(np.abs(expected).max()) > 0.1  # not a trivially zero output


@pytest.mark.slow
def test_fp16_build_input_keeps_the_decomposed_centernet_close(centernet_onnx):
    """The FP16 ONNX a ``--precision fp16`` build parses (float32 I/O) stays close to FP32 in ORT."""
    from trtdet.engines.tensorrt.builder import to_fp16

    decomposed = decompose_deform_conv(onnx.load(str(centernet_onnx)))
    half = to_fp16(decomposed)
    assert any(init.data_type == TensorProto.FLOAT16 for init in half.graph.initializer)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    batch = np.random.default_rng(2).standard_normal((1, 3, 128, 128)).astype(np.float32)
    expected = _run(decomposed, {"images": batch})
    got = _run(half, {"images": batch})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=0.02 * float(np.abs(expected).max()))
