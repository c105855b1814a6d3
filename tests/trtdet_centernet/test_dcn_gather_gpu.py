"""The CUDA DCNv2 (``dcn_gather``) on the GPU: on a pipeline's side stream and in CUDA graphs.

Reference: the pure-torch CPU reference ``modulated_deform_conv`` (itself checked against ONNX
Runtime's DeformConv in test_dcn.py), in float64. torchvision's ``deform_conv2d`` fails both
tests: its im2col runs on the legacy default stream, outside the stream and outside the capture.
Skips without a CUDA GPU.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

from trtdet_centernet.dcn import DCNv2, modulated_deform_conv  # noqa: E402


@pytest.fixture(autouse=True)
def _gather_everywhere(monkeypatch):
    """Layers called through ``DCNv2`` run ``dcn_gather`` (fp16 layers default to the Triton kernel)."""
    monkeypatch.setenv("TRTDET_DCN", "gather")


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
