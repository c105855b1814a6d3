"""The fused Triton DCNv2 on the CPU: its numerics under Triton's interpreter (in a child process),
``torch.export`` with a dynamic batch, the CUDA dispatch switch, and calls it refuses.

The numerics (``interpreted/test_interp_dcn_triton.py``) compare with ONNX Runtime's DeformConv
and the float64 pure-torch reference; the GPU tests are in test_dcn_triton_gpu.py. Everything
here skips with the reason when ``triton`` is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install triton): the Triton DCN is not tested")

from trtdet_centernet import dcn  # noqa: E402
from trtdet_centernet.dcn_gather import deform_conv2d_gather  # noqa: E402
from trtdet_centernet.dcn_triton import deform_conv2d_triton, supports  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.slow
@pytest.mark.skipif(tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13),
                    reason="torch < 2.13's wrap_triton refuses Triton's interpreted kernels (seen with 2.11 on the H200)")
def test_kernel_under_the_triton_interpreter():
    """Triton reads TRITON_INTERPRET when a kernel is decorated, so the interpreter runs in a child."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "interpreted")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"interpreted DCN tests failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def _inputs(batch=2, channels=20, size=(7, 9), out_ch=19):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, *size, generator=g).contiguous(memory_format=torch.channels_last)
    offset = torch.randn(batch, 18, *size, generator=g) * 3
    mask = torch.rand(batch, 9, *size, generator=g)
    weight = torch.randn(out_ch, channels, 3, 3, generator=g)
    return x, offset, mask, weight, torch.randn(out_ch, generator=g)


def test_exports_with_a_dynamic_batch_as_one_op():
    """What the inductor backend does on CUDA, traced here on CPU tensors (export runs the op's fake
    kernel only; running or compiling the program needs a GPU): one ``trtdet_centernet::deform_conv2d``
    node whose output keeps the symbolic batch and channels-last strides."""
    x, offset, mask, weight, bias = _inputs()

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias)

        def forward(self, x, offset, mask):
            return deform_conv2d_triton(x, offset, mask, self.weight, self.bias, (1, 1), (1, 1), (1, 1))

    batch = torch.export.Dim("batch", min=1, max=32)
    exported = torch.export.export(Layer(), (x, offset, mask), dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
    nodes = [n for n in exported.graph.nodes if n.op == "call_function"]
    assert [n.target for n in nodes] == [torch.ops.trtdet_centernet.deform_conv2d.default]
    out = nodes[0].meta["val"]
    assert isinstance(out.shape[0], torch.SymInt) and tuple(out.shape[1:]) == (19, 7, 9)
    assert out.stride()[1:] == (1, 9 * 19, 19)  # NHWC memory
    assert str(out.shape[0]) == str(nodes[0].args[0].meta["val"].shape[0])  # the input's batch symbol
    (constraint,) = exported.range_constraints.values()
    assert (constraint.lower, constraint.upper) == (1, 32)


def test_cuda_dispatch_prefers_triton_for_half_precision_and_honours_the_switch(monkeypatch):
    x, _, _, weight, _ = _inputs()
    half, half_weight = x.half(), weight.half()
    monkeypatch.delenv(dcn.DCN_ENV, raising=False)
    assert dcn.cuda_implementation(half, half_weight, 1) is deform_conv2d_triton
    assert dcn.cuda_implementation(x, weight, 1) is deform_conv2d_gather  # float32: gather unless asked
    wide = torch.zeros(1, 256, 4, 4).half().contiguous(memory_format=torch.channels_last)
    assert dcn.cuda_implementation(wide, torch.zeros(8, 256, 3, 3).half(), 1) is deform_conv2d_gather  # > 128 channels
    assert dcn.cuda_variant() == "triton"
    monkeypatch.setenv(dcn.DCN_ENV, "triton")
    assert dcn.cuda_implementation(x, weight, 1) is deform_conv2d_triton
    assert dcn.cuda_implementation(half, half_weight, 1) is deform_conv2d_triton
    assert dcn.cuda_variant() == "triton-all"
    monkeypatch.setenv(dcn.DCN_ENV, "gather")
    assert dcn.cuda_implementation(half, half_weight, 1) is deform_conv2d_gather
    assert dcn.cuda_variant() == "gather"
    monkeypatch.setenv(dcn.DCN_ENV, "fast")
    with pytest.raises(ValueError, match=r"^TRTDET_DCN='fast': expected 'gather' or 'triton'"):
        dcn.cuda_implementation(x, weight, 1)


def test_cuda_dispatch_falls_back_to_gather_for_calls_triton_does_not_run(monkeypatch):
    x, _, _, weight, _ = _inputs()
    monkeypatch.setenv(dcn.DCN_ENV, "triton")
    assert dcn.cuda_implementation(x, weight, 2) is deform_conv2d_gather  # two deformable groups
    assert dcn.cuda_implementation(x.double(), weight.double(), 1) is deform_conv2d_gather
    assert dcn.cuda_implementation(x.bfloat16(), weight.bfloat16(), 1) is deform_conv2d_gather
    monkeypatch.setattr(dcn, "_triton_missing", True)  # as when `import triton` failed
    assert dcn.cuda_implementation(x, weight, 1) is deform_conv2d_gather


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"groups": 2}, "deformable_groups=2"),
        ({"dtype": torch.float64}, "input dtype torch.float64"),
        ({"weight_dtype": torch.float16}, "weight dtype torch.float16 differs"),
        ({"offset_channels": 16}, "offset/mask: expected"),
    ],
    ids=["groups", "dtype", "weight-dtype", "offset-shape"],
)
def test_refused_calls_say_why_in_one_line(change, message):
    x, offset, mask, weight, bias = _inputs()
    x = x.to(change.get("dtype", x.dtype))
    weight = weight.to(change.get("weight_dtype", x.dtype))
    offset = offset[:, : change.get("offset_channels", 18)]
    groups = change.get("groups", 1)
    assert supports(x, weight, groups) == message.startswith("offset")
    with pytest.raises(ValueError, match=message) as info:
        deform_conv2d_triton(x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1), groups)
    assert "\n" not in str(info.value) and str(info.value).startswith("deform_conv2d_triton: ")
