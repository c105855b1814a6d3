"""``torch.export`` with a dynamic batch traces the converted networks; the exported programs
equal onnxruntime at batch 1 and 3 (max |got - ort| <= 1e-4 * max |ort|, float32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trtdet.onnx_torch import convert

from .test_models import FIXTURES, assert_close, assert_same_queries, images, reference, rtdetr_photos

#: The example batch is 2: torch.export specialises a dimension whose example size is 0 or 1.
EXAMPLE_BATCH = 2


def export(module: torch.nn.Module, size: int) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=64)
    example = torch.from_numpy(images(EXAMPLE_BATCH, size))
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def _check(program: torch.export.ExportedProgram, path: Path | str, size: int, *, per_image: bool) -> None:
    runner = program.module()
    for batch in (1, 3):
        x = images(batch, size, seed=10 + batch)
        with torch.no_grad():
            got = runner(torch.from_numpy(x)).numpy()
        assert_close(got, reference(str(path), x, per_image=per_image))


@pytest.mark.parametrize("name", ["yolov5u_static.onnx", "yolov8_dynamic_raw.onnx", "yolo11_static.onnx",
                                  "yolo11_dynamic.onnx"])
def test_exported_ultralytics_program_equals_onnxruntime(name):
    module = convert(FIXTURES / name, input_size=(160, 160))
    _check(export(module, 160), FIXTURES / name, 160, per_image="static" in name)


def test_exported_yolo11n_program_equals_onnxruntime(yolo_onnx):
    module = convert(yolo_onnx, input_size=(640, 640))
    program = export(module, 640)
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name.startswith("x")]
    assert placeholders and str(placeholders[0].meta["val"].shape[0]).startswith("s")  # symbolic batch
    _check(program, yolo_onnx, 640, per_image=False)


def test_exported_centernet_program_equals_onnxruntime():
    from trtdet_centernet.plugin import DEFAULT_MODEL

    module = convert(DEFAULT_MODEL)
    program = export(module, 512)
    runner = program.module()
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 512, 512)).astype(np.float32)
        with torch.no_grad():
            got = runner(torch.from_numpy(x)).numpy()
        assert_close(got, reference(str(DEFAULT_MODEL), x, per_image=False))


@pytest.mark.slow
def test_exported_rtdetr_program_equals_onnxruntime(tmp_path):
    """RT-DETR's converted decoder (sizes derived from the batch, TopK, GridSample) traces with a
    dynamic batch, as the inductor backend exports it; the program equals onnxruntime on photos."""
    path = FIXTURES / "rtdetr_tiny_dynamic.onnx"
    program = export(convert(path, input_size=(640, 640)), 640)
    photos = rtdetr_photos(tmp_path, 4)
    runner = program.module()
    for x in (photos[:1], photos[1:4]):
        with torch.no_grad():
            got = runner(torch.from_numpy(x)).numpy()
        assert_same_queries(got, reference(str(path), x, per_image=False))


def test_a_batch_size_cast_to_float_and_back_stays_dynamic():
    """Cast of a shape value to float (RT-DETR-l casts its batch size) keeps the batch symbolic: ``float()`` of
    a symbolic size pinned it to the example's 2, and torch.export refused the dynamic batch. The float used as
    data stays a float (it was made an int64 tensor, truncating 2.5 B)."""
    from onnx import TensorProto, helper

    from .helpers import make_model, ort_run

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Cast", ["batch"], ["batch_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["batch_f", "factor"], ["scale"]),  # 2.5 B
        helper.make_node("Cast", ["scale"], ["scale_i"], to=TensorProto.INT64),  # truncated
        helper.make_node("Cast", ["scale_i"], ["offset"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y"]),
    ]
    model = make_model(nodes, {"x": (3, 4, 4)}, ["y"],
                       initializers={"zero": np.array(0, dtype=np.int64), "factor": np.array(2.5, dtype=np.float32)})
    module = convert(model, converters={})
    example = torch.zeros((EXAMPLE_BATCH, 3, 4, 4))
    program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    for batch in (1, 3, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4)).astype(np.float32)
        (want,) = ort_run(model, {"x": x})
        np.testing.assert_allclose(want, x * 2.5 * batch + int(2.5 * batch), rtol=1e-6, atol=1e-5)  # hand-computed
        with torch.no_grad():
            for run in (module, program.module()):
                np.testing.assert_allclose(run(torch.from_numpy(x)).numpy(), want, rtol=1e-6, atol=1e-5)


def test_a_size_that_moves_with_the_batch_only_between_some_batches_is_not_folded():
    """``floor(B / 2)`` is 1 at batch 2 and at batch 3: probing two neighbouring batches folded it into a
    constant 1, so batch 1 gave x + 1 where onnxruntime gives x + 0 (a silent wrong answer)."""
    from onnx import TensorProto, helper

    from .helpers import make_model, ort_run

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Div", ["batch", "two"], ["half"]),  # integer division: floor(B / 2)
        helper.make_node("Cast", ["half"], ["half_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "half_f"], ["y"]),
    ]
    model = make_model(nodes, {"x": (2, 3)}, ["y"],
                       initializers={"zero": np.array(0, dtype=np.int64), "two": np.array(2, dtype=np.int64)})
    module = convert(model, converters={})
    for batch in (1, 2, 3, 4, 7):
        x = np.zeros((batch, 2, 3), dtype=np.float32)
        (want,) = ort_run(model, {"x": x})
        assert float(want.max()) == batch // 2  # hand-computed
        with torch.no_grad():
            np.testing.assert_array_equal(module(torch.from_numpy(x)).numpy(), want)
