"""The fused Triton DCNv2 on the GPU: CenterNet's layer shapes, a pipeline's side stream, CUDA
graphs, torch.compile and an AOTInductor package with a dynamic batch.

Reference: the pure-torch CPU reference ``modulated_deform_conv`` (itself checked against ONNX
Runtime's DeformConv in test_dcn.py), in float64. Skips without a CUDA GPU or without triton.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="triton is not installed: the Triton DCN is not tested")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

from trtdet_centernet import dcn  # noqa: E402
from trtdet_centernet.dcn import DCNv2, modulated_deform_conv  # noqa: E402
from trtdet_centernet.dcn_triton import deform_conv2d_triton  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

#: CenterNet ResDCN-18's three DCN layers at 512x512 input: (in, out, feature size).
LAYERS = [(512, 256, 16), (256, 128, 32), (128, 64, 64)]


@pytest.fixture(autouse=True)
def _prefer_triton(monkeypatch):
    monkeypatch.delenv(dcn.DCN_ENV, raising=False)


@pytest.fixture(autouse=True)
def _triton_everywhere(monkeypatch):
    """Layers called through ``DCNv2`` run the Triton kernel in float32 too (by default only fp16)."""
    monkeypatch.setenv(dcn.DCN_ENV, "triton")


def _layer(channels: int = 64, out: int = 32) -> DCNv2:
    torch.manual_seed(0)
    layer = DCNv2(channels, out, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.05)  # offsets of a few pixels
    torch.nn.init.normal_(layer.conv_offset_mask.bias, std=1.0)
    return layer


def _reference(layer: DCNv2, x: torch.Tensor) -> torch.Tensor:
    cpu = _layer(layer.in_channels, layer.out_channels).double()
    cpu.load_state_dict({k: v.double().cpu() for k, v in layer.state_dict().items()})
    host = x.double().cpu()
    with torch.no_grad():
        offset, mask = cpu.offset_and_mask(host)
        return modulated_deform_conv(host, offset, mask, cpu.weight, cpu.bias, cpu.stride, cpu.padding, cpu.dilation, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize(("channels", "out_ch", "size"), LAYERS, ids=[f"{c}to{o}@{s}" for c, o, s in LAYERS])
def test_centernet_layer_shapes_match_the_float64_reference(channels, out_ch, size, dtype):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, size, size, generator=g)
    offset = torch.randn(2, 18, size, size, generator=g) * 2  # samples leave the image at the borders
    mask = torch.rand(2, 9, size, size, generator=g)
    weight = torch.randn(out_ch, channels, 3, 3, generator=g) / (channels * 9) ** 0.5
    bias = torch.randn(out_ch, generator=g)
    device = [t.to(dtype).cuda() for t in (x, offset, mask, weight, bias)]
    device[0] = device[0].contiguous(memory_format=torch.channels_last)
    got = deform_conv2d_triton(*device, (1, 1), (1, 1), (1, 1))
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    # The reference sees the values the kernel sees (fp16-rounded inputs in the fp16 case).
    want = modulated_deform_conv(*(t.double().cpu() for t in device), 1, 1, 1, 1)
    error = float((got.double().cpu() - want).abs().max())
    # fp32 runs without TF32 (TF32 would be ~1e-3 off); fp16 rounds the samples and the output.
    tolerance = (2e-5 if dtype == torch.float32 else 4e-3) * float(want.abs().max())
    assert error < tolerance, f"max |triton - reference| = {error:.3g} (tolerance {tolerance:.3g})"


def test_an_empty_batch_gives_an_empty_output():
    x = torch.zeros(0, 64, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
    offset, mask = torch.zeros(0, 18, 8, 8, device="cuda"), torch.zeros(0, 9, 8, 8, device="cuda")
    weight, bias = torch.zeros(32, 64, 3, 3, device="cuda"), torch.zeros(32, device="cuda")
    out = deform_conv2d_triton(x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1))
    torch.cuda.synchronize()
    assert tuple(out.shape) == (0, 32, 8, 8)


def test_network_layers_use_the_triton_kernel(monkeypatch):
    layer = _layer().cuda()
    x = torch.randn(1, 64, 8, 8, device="cuda")
    assert dcn.cuda_implementation(x, layer.weight, 1) is deform_conv2d_triton  # TRTDET_DCN=triton here
    monkeypatch.delenv(dcn.DCN_ENV)
    assert dcn.cuda_implementation(x.half(), layer.weight.half(), 1) is deform_conv2d_triton  # the default for fp16


def test_dcn_on_a_side_stream_right_after_a_long_kernel_equals_the_reference():
    layer = _layer().cuda().to(memory_format=torch.channels_last)
    side = torch.cuda.Stream()
    big = torch.randn(8192, 8192, device="cuda")
    for trial in range(5):
        x = torch.randn(4, 64, 40, 48, device="cuda").contiguous(memory_format=torch.channels_last)
        # Full fp32 (no TF32 in the offset convolution): a race would be off by O(1), not by rounding.
        exact = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
        with torch.cuda.stream(side), torch.no_grad(), exact:
            side.wait_stream(torch.cuda.current_stream())
            busy = big @ big  # keeps the side stream busy while the DCN's inputs are being produced
            y = layer(x * 1.0 + busy[0, 0] * 0)
        torch.cuda.current_stream().wait_stream(side)
        want = _reference(layer, x)
        error = float((y.double().cpu() - want).abs().max())
        assert error < 1e-4 * max(1.0, float(want.abs().max())), f"trial {trial}: max |gpu - reference| = {error:.3g}"


def test_dcn_replays_in_a_cuda_graph():
    from trtdet.engines.graphs import CudaGraphRunner

    layer = _layer().cuda().half().to(memory_format=torch.channels_last).eval()

    def network(x):
        with torch.no_grad():
            return layer(x)

    runner = CudaGraphRunner(network, max_batch=4)
    for rows in (2, 2, 1):
        x = torch.randn(rows, 64, 24, 24, device="cuda").half().contiguous(memory_format=torch.channels_last)
        (got,) = runner(x)
        want = _reference(layer, x.float())
        error = float((got.double().cpu() - want).abs().max())
        assert error < 0.05 * float(want.abs().max()), f"replay is {error:.3g} off the reference"
    assert runner.disabled_reason is None


def test_inductor_sees_that_the_kernel_writes_only_its_output():
    """Inductor's mutation analysis of the kernel: if it failed, every input would be cloned per call."""
    from torch._functorch.aot_autograd import aot_export_module

    layer = _layer().cuda().to(memory_format=torch.channels_last).eval()
    x = torch.randn(2, 64, 12, 12, device="cuda").contiguous(memory_format=torch.channels_last)

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return (self.layer(x),)

    with torch.no_grad():
        graph, _ = aot_export_module(Wrapped(), (x,), trace_joint=False)
    calls = [n for n in graph.graph.nodes if n.target is torch.ops.higher_order.triton_kernel_wrapper_functional]
    assert len(calls) == 1, graph.code
    assert list(calls[0].kwargs["tensors_to_clone"]) == ["out_ptr"]


def test_torch_compile_fullgraph_equals_the_reference():
    layer = _layer().cuda().half().to(memory_format=torch.channels_last).eval()
    compiled = torch.compile(layer, fullgraph=True, dynamic=False)
    x = torch.randn(2, 64, 20, 24, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = compiled(x)
    want = _reference(layer, x.float())
    error = float((got.double().cpu() - want).abs().max())
    assert error < 0.02 * float(want.abs().max()), f"compiled layer is {error:.3g} off the reference"


AOTI_SCRIPT = """
import sys
import torch
from trtdet_centernet.dcn import DCNv2, modulated_deform_conv

torch.manual_seed(0)
reference = DCNv2(64, 32, 3, padding=1)
torch.nn.init.normal_(reference.conv_offset_mask.weight, std=0.05)
torch.nn.init.normal_(reference.conv_offset_mask.bias, std=1.0)
layer = DCNv2(64, 32, 3, padding=1)
layer.load_state_dict(reference.state_dict())
layer = layer.cuda().half().to(memory_format=torch.channels_last).eval()
reference = reference.double().eval()  # float64 on the CPU
example = torch.randn(2, 64, 24, 24, device="cuda").half().contiguous(memory_format=torch.channels_last)
batch = torch.export.Dim("batch", min=1, max=8)
with torch.no_grad():
    exported = torch.export.export(layer, (example,), dynamic_shapes=({0: batch},))
assert any("deform_conv2d" in str(n.target) for n in exported.graph.nodes), exported.graph
from trtdet.engines.inductor.build import compile_settings
from trtdet.engines.inductor.compiler import choose_compiler
# trtdet's compiler choice and settings, as a package build uses them (the H200 image's default
# CXX links libstdc++ statically: packages it builds segfault while loading).
with torch._inductor.config.patch(compile_settings(choose_compiler()[0], "cuda")):
    package = torch._inductor.aoti_compile_and_package(exported, package_path=sys.argv[1])
with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
    runner = torch._inductor.aoti_load_package(package)
for rows in (1, 3, 8):
    x = torch.randn(rows, 64, 24, 24, device="cuda").half().contiguous(memory_format=torch.channels_last)
    got = runner(x)
    host = x.double().cpu()
    with torch.no_grad():
        offset, mask = reference.offset_and_mask(host)
        want = modulated_deform_conv(host, offset, mask, reference.weight, reference.bias, 1, 1, 1, 1)
    error = float((got.double().cpu() - want).abs().max())
    scale = float(want.abs().max())
    print(f"batch {rows}: max error {error:.3g} of {scale:.3g}", flush=True)
    assert tuple(got.shape) == (rows, 32, 24, 24)
    assert error < 0.02 * scale
print("AOTI OK")
"""


@pytest.mark.slow
def test_aoti_package_with_a_dynamic_batch_equals_the_reference(tmp_path):
    """Exported with ``Dim("batch")``, compiled by AOTInductor, loaded and run at three batch sizes.

    In a child process, so a crash is a failure rather than the end of the session. Its first
    run on the H200 compiled with the image's default CXX and died with SIGSEGV while loading
    (the static-libstdc++ compiler trtdet's probe rejects); it now compiles as trtdet's builds do.
    """
    script = tmp_path / "aoti_dcn.py"
    script.write_text(textwrap.dedent(AOTI_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "dcn.pt2")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0 and "AOTI OK" in result.stdout, f"exit {result.returncode}:\n{output}"
