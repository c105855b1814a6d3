"""Legacy tutorial ONNX (DCN as op ``Plugin`` name=DCNv2) builds through the same DCN lowerings.

The legacy file is exported here from the same network as the standard export, with each DCN
emitted like the C++ tutorial did (raw ``conv_offset_mask`` output as one input, ``info`` JSON)
and the heads as separate outputs; the rewritten graph must compute the standard output.
"""

from __future__ import annotations

import copy
import types
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtdet.engines.artifact_cache import ArtifactCache
from trtdet.engines.tensorrt.builder import BuildConfig, build_engine
from trtdet.plugins import get_model
from trtdet_centernet.tensorrt.plugin import PLUGIN_NAME
from trtdet_centernet.tensorrt.rewrite import has_legacy_dcn, rewrite_dcn

torch = pytest.importorskip("torch")

from ..legacy_exports import tutorial_dcn_forward  # noqa: E402 - needs torch

pytestmark = pytest.mark.usefixtures("tensorrt_plugins")


class _Heads(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        heads = self.net.heads(x)
        return heads["hm"], heads["wh"], heads["reg"]


@pytest.fixture(scope="module")
def legacy_onnx(centernet_torch_model, tmp_path_factory):
    from trtdet_centernet.dcn import DCNv2

    net = copy.deepcopy(centernet_torch_model)
    for module in net.modules():
        if isinstance(module, DCNv2):
            module.forward = types.MethodType(tutorial_dcn_forward, module)
    path = tmp_path_factory.mktemp("legacy") / "legacy.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Heads(net).eval(),
            (torch.zeros(1, 3, 128, 128),),
            str(path),
            dynamo=False,
            opset_version=11,
            input_names=["input.1"],
            output_names=["hm", "wh", "reg"],
        )
    return path


@pytest.mark.slow
def test_legacy_plugin_graph_decomposes_to_the_standard_output(legacy_onnx, centernet_torch_model):
    legacy = onnx.load(str(legacy_onnx))
    assert has_legacy_dcn(legacy)
    decomposed = rewrite_dcn(legacy, "decomposed")
    ops = {n.op_type for n in decomposed.graph.node}
    assert "GridSample" in ops and not {"Plugin", "DCNv2", "DeformConv"} & ops
    batch = np.random.default_rng(1).standard_normal((1, 3, 128, 128)).astype(np.float32)
    got = ort.InferenceSession(decomposed.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": batch}
    )[0]
    with torch.no_grad():
        expected = centernet_torch_model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    plugin_ops = {n.op_type for n in rewrite_dcn(legacy, "plugin").graph.node}
    assert PLUGIN_NAME in plugin_ops and not {"Plugin", "DeformConv"} & plugin_ops


@pytest.mark.slow
def test_legacy_onnx_builds_with_tensorrt_rtx(rtx, legacy_onnx, tmp_path):
    result = build_engine(
        legacy_onnx, get_model("centernet").spec, BuildConfig(trt="rtx"), cache=ArtifactCache(tmp_path)
    )
    meta = result.metadata
    assert meta.build_options == {"dcn": "decomposed"}
    assert [(t.name, t.shape) for t in meta.inputs] == [("images", (1, 3, 128, 128))]
    assert [(t.name, t.shape) for t in meta.outputs] == [("output", (1, 1024, 164))]
