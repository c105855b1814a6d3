"""CUDA graphs over a network: replay equals the direct call, or graphs turn themselves off.

Reference: the network called directly (no graph) on the same input. Skips without a CUDA GPU.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


class _Drifting:
    """A network whose result depends on host state the capture bakes in (a call counter)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x * float(self.calls)


def test_a_capture_that_replays_stale_work_turns_graphs_off():
    from trtdet.engines.graphs import CudaGraphRunner

    runner = CudaGraphRunner(_Drifting(), max_batch=4)
    batch = torch.rand(3, 5, device="cuda")
    with pytest.warns(UserWarning, match="CUDA graphs off for this engine: replaying the captured graph"):
        (first,) = runner(batch)
    assert runner.disabled_reason is not None and not runner.graphs
    (second,) = runner(batch)  # direct calls from now on
    assert torch.equal(second, batch * float(runner.network.calls))
    assert first.shape == batch.shape


def test_a_faithful_capture_keeps_its_graph_and_gives_the_direct_result():
    from trtdet.engines.graphs import CudaGraphRunner

    def network(x):
        return torch.nn.functional.relu(x * 2.0 - 0.5).sum(dim=1, keepdim=True)

    runner = CudaGraphRunner(network, max_batch=8)
    for rows in (1, 3, 8, 2):
        batch = torch.rand(rows, 16, device="cuda")
        (got,) = runner(batch)
        assert torch.allclose(got, network(batch))
    assert runner.disabled_reason is None and set(runner.graphs) == {(1, 16), (4, 16), (8, 16), (2, 16)}
