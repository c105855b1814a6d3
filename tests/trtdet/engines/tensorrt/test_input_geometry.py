"""The engine's input geometry: which H x W stay dynamic and the optimisation profile's shapes (hand-computed)."""

from __future__ import annotations

import dataclasses
import json

import onnx
import pytest
from onnx import TensorProto, helper

from trtdet.engines.tensorrt.builder import InputGeometry, fix_spatial_size, profile_shapes
from trtdet.plugins import get_model
from trtdet.spec_adapt import adapt_spec_to_file


def _model(dims: list) -> onnx.ModelProto:
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [image], [out])
    return helper.make_model(graph)


def _input_dims(model: onnx.ModelProto) -> list:
    return [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    ("dims", "letterbox", "geometry", "after"),
    [
        (["batch", 3, "height", "width"], "rect", InputGeometry((480, 640), None, True), ["batch", 3, "height", "width"]),
        (["batch", 3, "height", "width"], "square", InputGeometry((480, 640), None), ["batch", 3, 480, 640]),
        ([2, 3, "height", 320], "rect", InputGeometry((480, 320), 2), [2, 3, 480, 320]),  # one dim fixed: fixed
        ([1, 3, 256, 256], "rect", InputGeometry((256, 256), 1), [1, 3, 256, 256]),
    ],
)
def test_rect_keeps_a_dynamic_height_and_width(dims, letterbox, geometry, after):
    spec = dataclasses.replace(get_model("yolo").spec, input_size=(480, 640), letterbox=letterbox)
    model = _model(dims)
    assert fix_spatial_size(model, spec, "m.onnx") == geometry
    assert _input_dims(model) == after


@pytest.mark.parametrize(
    ("shape", "max_batch", "opt", "size", "expected"),
    [
        ((-1, 3, -1, -1), 8, 4, (384, 640), ((1, 3, 32, 32), (4, 3, 384, 640), (8, 3, 384, 640))),
        ((2, 3, -1, -1), 2, 2, (640, 640), ((2, 3, 32, 32), (2, 3, 640, 640), (2, 3, 640, 640))),
        ((-1, 3, 640, 640), 16, 16, None, ((1, 3, 640, 640), (16, 3, 640, 640), (16, 3, 640, 640))),
        ((1, 3, 640, 640), 1, 1, None, None),  # nothing dynamic: no profile
        ((-1, 3, -1, -1), 4, 4, (16, 640), ((1, 3, 16, 32), (4, 3, 16, 640), (4, 3, 16, 640))),  # below the stride
    ],
)
def test_profile_shapes(shape, max_batch, opt, size, expected):
    assert profile_shapes(shape, max_batch, opt, size, 32) == expected


def test_a_rect_engine_sets_the_letterbox_input_size_and_keeps_rect():
    spec = get_model("yolo").spec
    header = {"dynamic_input_size": "true", "input_size": json.dumps([480, 640])}
    adapted = adapt_spec_to_file(spec, header, (None, 3, None, None))
    assert adapted.input_size == (480, 640) and adapted.letterbox == "rect"
    # a fixed-size engine: its own H x W, square
    fixed = adapt_spec_to_file(spec, {"dynamic_input_size": "false", "input_size": "[480, 640]"}, (None, 3, 480, 640))
    assert fixed.input_size == (480, 640) and fixed.letterbox == "square"
    # an ONNX file's metadata says nothing of trtdet's header fields: the spec's size stays
    assert adapt_spec_to_file(spec, {"imgsz": "[320, 320]"}, ("b", 3, "h", "w")).input_size == spec.input_size
