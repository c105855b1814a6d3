"""ONNX export: the done-when check against the upstream model, and the graph's contract."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from trtdet.coco import COCO_NAMES
from trtdet.errors import ModelError, UsageError
from trtdet_centernet.export import export_model, export_onnx
from trtdet_centernet.network import build_centernet

from . import upstream_reference as upstream
from .conftest import SIZE


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_exported_checkpoint_matches_upstream_model_in_onnxruntime(
    exported_onnx, upstream_model, image_batch
):
    """Done when: official-format ResDCN-18 -> trtdet export -> onnxruntime == upstream, rel err < 1e-3."""
    got = _session(exported_onnx).run(["output"], {"images": image_batch.numpy()})[0]
    with torch.no_grad():
        expected = upstream.deployment_output(upstream_model(image_batch)[-1]).numpy()
    assert got.shape == (2, (SIZE // 4) ** 2, 164)
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel < 1e-3, rel
    # The test means something: the heads vary over the image and offsets are non-trivial.
    assert expected[..., 4:84].std() > 0.1


def test_graph_contract(exported_onnx):
    model = onnx.load(str(exported_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 9
    assert {(o.domain or "ai.onnx"): o.version for o in model.opset_import}["ai.onnx"] >= 19
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DeformConv") == 3
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model"] == "centernet"
    assert tuple(json.loads(meta["names"])) == COCO_NAMES
    session = _session(exported_onnx)
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.shape[1:]) == ("images", [3, SIZE, SIZE])
    assert (out.name, out.shape[1:]) == ("output", [(SIZE // 4) ** 2, 164])
    assert isinstance(inp.shape[0], str) and isinstance(out.shape[0], str)  # dynamic batch


def test_static_batch_and_custom_classes(tmp_path):
    torch.manual_seed(0)
    model = upstream.randomize_(build_centernet(18, num_classes=3), seed=5)
    path = export_model(model, tmp_path / "three.onnx", input_size=(64, 96))
    session = _session(path)
    assert session.get_inputs()[0].shape == [1, 3, 64, 96]
    assert session.get_outputs()[0].shape == [1, 16 * 24, 10]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == ["class_0", "class_1", "class_2"]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    assert model.training is False


def test_input_size_must_be_multiple_of_32(tmp_path):
    with pytest.raises(UsageError, match="multiples of 32, got 100x128"):
        export_model(build_centernet(18, 2), tmp_path / "x.onnx", input_size=(100, 128))


def test_bad_checkpoint_fails_before_export(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=f"^{bad}: "):
        export_onnx(bad, tmp_path / "x.onnx", input_size=(SIZE, SIZE))
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_of_a_bad_checkpoint_is_one_line_and_exit_1(centernet_plugin, tmp_path):
    from click.testing import CliRunner

    from trtdet.cli.main import cli

    bad = tmp_path / "yolo.pth"
    torch.save({"model.0.conv.weight": torch.zeros(1)}, bad)
    result = CliRunner().invoke(
        cli, ["export", "-m", "centernet", "--weights", str(bad), "-o", str(tmp_path / "x.onnx")]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if str(bad) in line]
    assert len(lines) == 1 and "looks like YOLO weights" in lines[0]
