"""Legacy ONNX (DCNv2 as ``Plugin``/``DCNv2`` ops, separate heads) -> the standard export."""

from __future__ import annotations

import copy
import types
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from trtdet.errors import ModelError
from trtdet_centernet.legacy import convert_legacy_onnx

from . import upstream_reference as upstream
from .conftest import SIZE
from .legacy_exports import fork_dcn_forward, tutorial_dcn_forward


class _TutorialHeads(torch.nn.Module):
    """The tutorial's export forward: list of heads, hm sigmoid-ed, its own 5x5 pooled map."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        ret = self.net(x)[-1]
        hm = torch.sigmoid(ret["hm"])
        return hm, ret["wh"], ret["reg"], F.max_pool2d(hm, 5, stride=1, padding=2)


class _ForkHeads(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        ret = self.net(x)[-1]
        return ret["hm"], ret["reg"], ret["wh"]


def _legacy_export(upstream_model, tmp_path, style: str, opset: int = 11):
    net = copy.deepcopy(upstream_model)
    forward = tutorial_dcn_forward if style == "tutorial" else fork_dcn_forward
    for module in net.deconv_layers:
        if isinstance(module, upstream.DCN):
            module.forward = types.MethodType(forward, module)
    wrapper = _TutorialHeads(net) if style == "tutorial" else _ForkHeads(net)
    names = ["hm", "wh", "reg", "hm_pool"] if style == "tutorial" else ["hm", "reg", "wh"]
    path = tmp_path / f"legacy_{style}_{opset}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper.eval(),
            (torch.zeros(1, 3, SIZE, SIZE),),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input.1"],
            output_names=names,
        )
    return path


@pytest.mark.parametrize(("style", "opset"), [("tutorial", 11), ("fork", 11), ("tutorial", 19)])
def test_legacy_graph_converts_to_the_standard_export(
    style, opset, upstream_model, exported_onnx, image_batch, tmp_path
):
    legacy = _legacy_export(upstream_model, tmp_path, style, opset)
    original = onnx.load(str(legacy))
    assert {o.domain: o.version for o in original.opset_import}[""] == opset
    ops = {n.op_type for n in original.graph.node}
    assert ("Plugin" if style == "tutorial" else "DCNv2") in ops and "DeformConv" not in ops

    converted = convert_legacy_onnx(legacy, tmp_path / "converted.onnx")

    model = onnx.load(str(converted))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("DeformConv") == 3
    assert not {"Plugin", "DCNv2"} & {n.op_type for n in model.graph.node}
    assert {p.key: p.value for p in model.metadata_props}["model"] == "centernet"
    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    x = image_batch[:1].numpy()
    got = session.run(None, {"images": x})[0]
    standard = ort.InferenceSession(str(exported_onnx), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    with torch.no_grad():
        reference = upstream.deployment_output(upstream_model(image_batch[:1])[-1]).numpy()
    scale = np.abs(reference).max()
    assert np.abs(got - reference).max() / scale < 1e-3
    assert np.abs(got - standard).max() / scale < 1e-4


def test_cli_from_legacy(upstream_model, centernet_plugin, tmp_path):
    from trtdet.cli.main import cli

    legacy = _legacy_export(upstream_model, tmp_path, "tutorial")
    out = tmp_path / "standard.onnx"
    result = CliRunner().invoke(
        cli, ["export", "--model", "centernet", "--from-legacy", str(legacy), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_not_legacy_and_unreadable_files(exported_onnx, tmp_path):
    with pytest.raises(ModelError, match=f"^{exported_onnx}: no legacy DCNv2 nodes"):
        convert_legacy_onnx(exported_onnx, tmp_path / "x.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelError, match=f"^{junk}: not a readable ONNX file"):
        convert_legacy_onnx(junk, tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="no such ONNX file"):
        convert_legacy_onnx(tmp_path / "missing.onnx", tmp_path / "x.onnx")


def test_unnamed_heads_are_reported(upstream_model, tmp_path):
    legacy = _legacy_export(upstream_model, tmp_path, "fork")
    model = onnx.load(str(legacy))
    for out in model.graph.output:
        for node in model.graph.node:
            node.output[:] = [f"out_{out.name}" if o == out.name else o for o in node.output]
        out.name = f"out_{out.name}"
    renamed = tmp_path / "unnamed.onnx"
    onnx.save(model, str(renamed))
    with pytest.raises(ModelError, match="expected one fused output or outputs named hm, wh, reg"):
        convert_legacy_onnx(renamed, tmp_path / "x.onnx")
