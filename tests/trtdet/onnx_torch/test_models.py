"""Whole networks against onnxruntime: the shipped YOLO11n, real Ultralytics v5u/v8/11 exports
(static and dynamic batch, simplified and not), CenterNet's shipped and freshly exported ONNX.

Tolerance: float32 on both sides with different kernels; outputs are compared relative to
their largest magnitude (box coordinates reach hundreds of pixels): max |got - ort| <= 1e-4 * max |ort|.
Static-batch files are judged at batch 8 against onnxruntime run image by image (the file
itself only takes batch 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from trtdet.onnx_torch import convert

from .helpers import ort_run

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "ultralytics"
ULTRALYTICS = sorted(p.name for p in FIXTURES.glob("*.onnx"))
REL = 1e-4


def reference(model: onnx.ModelProto | str, x: np.ndarray, *, per_image: bool) -> np.ndarray:
    proto = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    if not per_image:
        return ort_run(proto, {proto.graph.input[0].name: x})[0]
    return np.concatenate([ort_run(proto, {proto.graph.input[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= REL * np.abs(expected).max(), np.abs(got - expected).max()


def run(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)


def test_fixture_versions_are_recorded():
    """Every fixture is recorded with the tools that made it: versions.json (v5u/v8/11) or
    families_detections.json (YOLO26, YOLOv10, RT-DETR)."""
    versions = json.loads((FIXTURES / "versions.json").read_text())
    assert versions["ultralytics"] and versions["torch"]
    families = json.loads((FIXTURES / "families_detections.json").read_text())
    assert families["versions"]["ultralytics"] and families["versions"]["torch"]
    family_files = {f["file"] for f in families["families"].values()} & set(ULTRALYTICS)
    assert sorted(set(versions["files"]) | family_files) == ULTRALYTICS


#: Compared tensor by tensor on noise images. The families' networks (tests/data/make_ultralytics_families.py)
#: have redrawn, spread-out classification layers that noise drives to saturation: their end-to-end
#: heads then pick their top 300 among tied scores, and the one-to-many head differs by 1e-3 of its
#: range. They are compared as detections on real photos instead
#: (tests/trtdet_yolo/test_ultralytics_families.py, with --backend torch).
ELEMENTWISE = sorted(json.loads((FIXTURES / "versions.json").read_text())["files"])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_ultralytics_export_equals_onnxruntime(name):
    path = FIXTURES / name
    module = convert(path, input_size=(160, 160))
    static = "static" in name
    for batch in (1, 8 if static else 4):
        x = images(batch, 160, seed=batch)
        assert_close(run(module, x), reference(str(path), x, per_image=static))


def test_static_batch_file_declares_batch_one():
    dims = onnx.load(str(FIXTURES / "yolov8_static.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 160, 160]


def test_shipped_yolo11n_equals_onnxruntime(yolo_onnx):
    module = convert(yolo_onnx, input_size=(640, 640))
    x = images(2, 640)
    assert_close(run(module, x), reference(str(yolo_onnx), x, per_image=False))
    assert_close(run(module, x[:1]), reference(str(yolo_onnx), x[:1], per_image=False))


def _fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store every float initializer as fp16 behind a ``Cast`` (how fp16-weight exports look)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init).astype(np.float16)
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array, init.name + "_fp16"))
        casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def test_fp16_weight_file_equals_onnxruntime():
    model = _fp16_weights(onnx.load(str(FIXTURES / "yolov8_dynamic.onnx")))
    module = convert(model, input_size=(160, 160))
    assert all(p.dtype == torch.float32 for p in module.parameters())
    x = images(2, 160)
    assert_close(run(module, x), reference(model, x, per_image=False))


def test_module_moves_like_any_module():
    module = convert(FIXTURES / "yolo11_dynamic.onnx", input_size=(160, 160))
    x = images(2, 160)
    expected = reference(str(FIXTURES / "yolo11_dynamic.onnx"), x, per_image=False)
    assert sum(p.numel() for p in module.parameters()) > 10_000
    module = module.to(torch.float64).to(memory_format=torch.channels_last)
    with torch.no_grad():
        got = module(torch.from_numpy(x).double().contiguous(memory_format=torch.channels_last))
    assert got.dtype == torch.float64
    assert_close(got.float().numpy(), expected)


# -- CenterNet: DeformConv comes from the centernet plugin through the hook -------------------

def test_shipped_centernet_equals_onnxruntime():
    from trtdet_centernet.plugin import DEFAULT_MODEL

    module = convert(DEFAULT_MODEL)
    x = np.random.default_rng(1).standard_normal((2, 3, 512, 512)).astype(np.float32)
    assert_close(run(module, x), reference(str(DEFAULT_MODEL), x, per_image=False))


@pytest.fixture(scope="module")
def centernet_exports(tmp_path_factory):
    from trtdet_centernet.export import export_onnx
    from trtdet_centernet.network import build_centernet

    torch.manual_seed(5)
    model = build_centernet(18, num_classes=3).eval()
    folder = tmp_path_factory.mktemp("centernet")
    checkpoint = folder / "resdcn18.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, checkpoint)
    return {dynamic: export_onnx(checkpoint, folder / f"dynamic{dynamic}.onnx", input_size=(128, 128), dynamic_batch=dynamic)
            for dynamic in (True, False)}


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic_batch", "static_batch"])
def test_exported_centernet_equals_onnxruntime(centernet_exports, dynamic):
    path = centernet_exports[dynamic]
    module = convert(path)
    x = np.random.default_rng(2).standard_normal((3, 3, 128, 128)).astype(np.float32)
    assert_close(run(module, x), reference(str(path), x, per_image=not dynamic))


@pytest.mark.slow
def test_rtdetr_equals_onnxruntime_on_photos(tmp_path):
    """The narrow RT-DETR (families fixture) on real photos stretched to 640x640 as its predictor
    does: the whole [B, 300, 6] output equals onnxruntime's. Its decoder makes tensors from sizes
    alone (Range over the batch, multiplied with constants) that must land on the input's device."""
    path = FIXTURES / "rtdetr_tiny_dynamic.onnx"
    x = rtdetr_photos(tmp_path, 6)
    module = convert(path, input_size=(640, 640))
    expected = reference(str(path), x, per_image=False)
    got = run(module, x)
    assert got.shape == expected.shape == (6, 300, 6)
    assert_same_queries(got, expected)


def rtdetr_photos(folder: Path, count: int) -> np.ndarray:
    """``count`` real photos as RT-DETR's predictor feeds them: stretched to 640x640, RGB, [0, 1]."""
    import cv2

    from tests.trtdet_yolo.ultralytics_cases import make_cases

    files = list(make_cases(folder).values())[:count]
    x = np.stack([cv2.resize(cv2.imread(str(f), cv2.IMREAD_COLOR), (640, 640), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
                  for f in files]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return np.ascontiguousarray(x)


def assert_same_queries(got: np.ndarray, expected: np.ndarray) -> None:
    """``[B, 300, 6]`` query rows equal within ``REL``, in order, except that two queries whose
    scores tie to float32 rounding (1e-5) may swap places (kernels' last bits decide the order)."""
    tol = REL * np.abs(expected).max()
    for b in range(len(expected)):
        for i in np.flatnonzero(np.abs(got[b] - expected[b]).max(-1) > tol):
            twins = np.flatnonzero(np.abs(expected[b] - got[b, i]).max(-1) <= tol)
            assert len(twins) and np.abs(expected[b, twins, 4] - expected[b, i, 4]).min() <= 1e-5, (b, i, got[b, i], expected[b, i])
    assert (np.abs(got - expected).max(-1) > tol).sum() <= 4


def test_range_and_constant_of_shape_follow_the_input_device():
    """Ops that make a tensor from sizes alone (Range, ConstantOfShape over a batch-derived size)
    are made on the input's device, not the CPU: probed on ``meta`` at conversion (RT-DETR's
    decoder multiplies such a Range with a constant) and run on ``meta`` as on any device."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Range", ["start", "n", "one"], ["r"]),
        helper.make_node("Mul", ["r", "k"], ["scaled"]),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("ConstantOfShape", ["n1"], ["filled"], value=numpy_helper.from_array(np.array([2.5], np.float32))),
        helper.make_node("Cast", ["scaled"], ["scaled_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["scaled_f", "filled"], ["y"]),
    ]
    inits = {"zero": np.array(0, np.int64), "start": np.array(0, np.int64), "one": np.array(1, np.int64),
             "k": np.array([3], np.int64), "axes": np.array([0], np.int64)}
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    module = convert(model, converters={})
    x = np.zeros((5, 4), np.float32)
    assert np.array_equal(run(module, x), reference(model, x, per_image=False))
    with torch.no_grad():
        out = module.to("meta")(torch.empty((7, 4), device="meta"))
    assert out.device.type == "meta" and out.shape == (7,)
