"""Describing model files: the CPU path reads ONNX files through onnxruntime, without the ``onnx`` package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trtdet.errors import ModelError
from trtdet.model_file import onnx_file_description, session_file_description


def _identity_onnx(path: Path) -> Path:
    """A runnable graph whose input has a named dynamic axis, an unnamed one and fixed ones, plus metadata."""
    import onnx
    from onnx import TensorProto, helper

    dims = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, None, 64])]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, None, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "g", dims, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '{"0": "a", "1": "b"}', "imgsz": "[32, 64]"})
    onnx.save(model, str(path))
    return path


def test_onnxruntime_describes_a_file_as_the_onnx_parse_does(tmp_path):
    path = _identity_onnx(tmp_path / "identity.onnx")
    metadata, shape = session_file_description(path)
    assert (metadata, shape) == onnx_file_description(path)  # the onnx package's parse is the reference
    assert metadata == {"names": '{"0": "a", "1": "b"}', "imgsz": "[32, 64]"} and shape == ["batch", 3, "?", 64]


def test_a_file_onnxruntime_cannot_read_is_one_line_naming_it(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage, not a protobuf graph")
    with pytest.raises(ModelError) as info:
        session_file_description(broken)
    message = str(info.value)
    assert message.startswith(f"{broken}: onnxruntime cannot read it") and "\n" not in message


_WITHOUT_ONNX = """
import json, sys
sys.modules["onnx"] = None  # `import onnx` now fails, as on an install without the package
import cv2, trtdet
from click.testing import CliRunner
from trtdet.cli.main import cli

image = cv2.imread(sys.argv[1])
counts = {model: len(trtdet.load(model)(image)) for model in ("yolo", "centernet")}
listed = CliRunner().invoke(cli, ["models", "--json"])
assert listed.exit_code == 0, listed.output
rows = {row["name"]: row["input_size"] for row in json.loads(listed.stdout)}
converting = CliRunner().invoke(cli, ["run", "--model", "yolo", "--backend", "torch", "--json", "-"])
print(json.dumps({"counts": counts, "sizes": rows, "onnx": sys.modules["onnx"] is not None,
                  "converting": [converting.exit_code, converting.output]}))
"""


def test_the_cpu_path_needs_no_onnx_package(photos):
    """Plugins load, both models detect on onnxruntime and ``trtdet models`` lists them with ``onnx`` unimportable."""
    import cv2

    import trtdet
    from trtdet.plugins import list_models
    from trtdet.spec_adapt import adapt_spec_to_file

    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_WITHOUT_ONNX), str(photos["astronaut"])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    image = cv2.imread(str(photos["astronaut"]))
    # The same detections as a process where onnx imports (the reference run, here).
    assert result["counts"] == {model: len(trtdet.load(model)(image)) for model in ("yolo", "centernet")}
    assert result["counts"]["yolo"] > 0 and not result["onnx"]
    # What does need onnx (converting an ONNX for the torch backend) says so in one line.
    code, output = result["converting"]
    assert code == 1 and output.strip().splitlines() == [
        "error: this needs the Python package 'onnx', which is not installed: pip install 'trtdet[onnx]' "
        "(building engines, exporting and the torch backends' ONNX import use it)"
    ]
    for name, info in list_models().items():  # input sizes as the onnx package's parse of each default file gives
        if info.spec.default_model is None:  # rtdetr ships no file: its registered size
            assert result["sizes"][name] == list(info.spec.input_size)
            continue
        default = Path(info.spec.default_model())
        assert result["sizes"][name] == list(adapt_spec_to_file(info.spec, *onnx_file_description(default)).input_size)
