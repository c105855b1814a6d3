"""Empty and malformed ONNX files on the torch backend and the inductor build: one line each, as
onnxruntime gives (they were an ``IndexError`` and a numpy reshape of 10^12 elements)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from trtdet.cli.main import cli
from trtdet.errors import ModelError
from trtdet.onnx_torch import convert


def _files(folder):
    (folder / "empty.onnx").write_bytes(b"")
    no_graph = onnx.ModelProto(ir_version=8, opset_import=[helper.make_opsetid("", 13)])
    (folder / "no_graph.onnx").write_bytes(no_graph.SerializeToString())
    huge = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1_000_000, 1_000_000])  # declared, no data
    graph = helper.make_graph([helper.make_node("Add", ["images", "w"], ["output0"])], "huge",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 64])], [huge])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (folder / "huge.onnx").write_bytes(model.SerializeToString())
    return folder


EXPECTED = {
    "empty.onnx": "model file is empty",
    "no_graph.onnx": "not an ONNX model: no graph was found in the protobuf",
    "huge.onnx": "initializer 'w' declares shape [1000000, 1000000] = 1,000,000,000,000 elements but holds 0 "
                 "(a corrupt or hostile file)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_onnxruntime_refuses_each_file_too(tmp_path, name):
    """The reference: onnxruntime will not load any of them (so neither may the converter)."""
    path = _files(tmp_path) / name
    with pytest.raises(Exception) as info:  # noqa: PT011 - onnxruntime's own exception types
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert type(info.value).__module__.startswith("onnxruntime")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torch_backend_run_is_one_line(tmp_path, name):
    path = _files(tmp_path) / name
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "--onnx", str(path), "--backend", "torch", "-q"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"error: {path}: {EXPECTED[name]}"]


def test_inductor_build_of_the_hostile_initializer_is_one_line(tmp_path):
    path = _files(tmp_path) / "huge.onnx"
    result = CliRunner().invoke(cli, ["build", str(path), "-m", "yolo", "--backend", "inductor", "--device", "cpu",
                                      "--output", str(tmp_path / "out.pt2")])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == f"error: {path}: {EXPECTED['huge.onnx']}"
    assert "Traceback" not in result.output and not (tmp_path / "out.pt2").exists()


def test_convert_checks_models_given_as_protos_and_bytes(tmp_path):
    _files(tmp_path)
    with pytest.raises(ModelError, match=r"^<onnx bytes>: model is empty$"):
        convert(b"")
    data = (tmp_path / "huge.onnx").read_bytes()
    with pytest.raises(ModelError, match=r"^<onnx bytes>: initializer 'w' declares shape"):
        convert(data)
    with pytest.raises(ModelError, match=r"^<onnx model>: initializer 'w' declares shape"):
        convert(onnx.load_from_string(data))
    short = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], np.zeros(6, np.float32).tobytes(), raw=True)
    short.raw_data = short.raw_data[:20]  # 5 floats for a [2, 3]
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])], [short])
    with pytest.raises(ModelError, match=r"declares shape \[2, 3\] = 6 elements but holds 5"):
        convert(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
