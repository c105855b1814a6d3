"""CUDA graphs over a network callable: one captured graph per batch-size bucket, replayed per call.

A batch of ``n`` images runs in the graph of the smallest bucket >= ``n`` (powers of two up to
the largest batch, and the largest batch itself): its rows are copied into the graph's static
input and the first ``n`` rows of each static output are returned. Few graphs serve every batch
size the batching worker forms, so graph memory stays bounded. Each capture is checked once:
replayed on a random input, it must give the network's direct outputs, or graphs are turned
off for that engine with a warning (a package whose work the capture misses would otherwise
replay stale results). Outputs are views of graph
memory, valid until the next call, as a TensorRT engine's output buffers are; the pipeline
queues each batch's decode on the stream before the next batch's network, which keeps that safe.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


class GraphMismatch(RuntimeError):
    """A captured graph's replay does not reproduce the network's direct outputs."""


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch``: (1, 2, 4, 8, 16, 32) for 32."""
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


class CudaGraphRunner:
    """Runs ``network(batch) -> tensor | sequence of tensors`` through captured CUDA graphs."""

    def __init__(self, network: Callable[[Any], Any], max_batch: int, warmup: int = 2) -> None:
        self.network = network
        self.buckets = batch_buckets(max_batch)
        self.warmup = warmup
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, tuple[Any, ...]]] = {}
        #: Why capture failed (then every call runs the network directly).
        self.disabled_reason: str | None = None

    def bucket(self, batch: int) -> int:
        for size in self.buckets:
            if size >= batch:
                return size
        raise ValueError(f"batch of {batch} exceeds the largest captured batch {self.buckets[-1]}")

    def _capture(self, static_input: Any) -> tuple[Any, tuple[Any, ...]]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.network(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: staging copies other threads queue meanwhile do not void the capture.
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            outputs = self.network(static_input)
        torch.cuda.current_stream().wait_stream(side)
        outputs = _as_tuple(outputs)
        self._check_replay(graph, static_input, outputs)
        return graph, outputs

    def _check_replay(self, graph: Any, static_input: Any, outputs: tuple[Any, ...]) -> None:
        """Replay once on a random input and compare with a direct call: ``GraphMismatch`` if they differ.

        A network whose work is not all captured (a kernel launched outside the capture
        stream, a buffer the graph does not own) would otherwise replay stale results.
        """
        probe = torch.rand(static_input.shape, device=static_input.device).to(static_input.dtype)
        static_input.copy_(probe.contiguous(memory_format=_layout(static_input)))
        graph.replay()
        replayed = [output.float().clone() for output in outputs]
        direct = [output.float() for output in _as_tuple(self.network(static_input))]
        for got, want in zip(replayed, direct, strict=True):
            error = float((got - want).abs().max()) if got.numel() else 0.0
            scale = float(want.abs().max()) if want.numel() else 0.0
            if not error <= 1e-3 * scale + 1e-3:
                raise GraphMismatch(f"replaying the captured graph gives outputs up to {error:.3g} off the network's own")

    def __call__(self, batch: Any) -> tuple[Any, ...]:
        if self.disabled_reason is not None:
            return _as_tuple(self.network(batch))
        rows = int(batch.shape[0])
        size = self.bucket(rows)
        key = (size, *batch.shape[1:])
        if key not in self.graphs:
            static_input = batch.new_zeros((size, *batch.shape[1:])).contiguous(memory_format=_layout(batch))
            try:
                graph, outputs = self._capture(static_input)
            except (RuntimeError, GraphMismatch) as exc:
                self.disabled_reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.warn(f"CUDA graphs off for this engine: {self.disabled_reason}", stacklevel=2)
                return _as_tuple(self.network(batch))
            self.graphs[key] = (graph, static_input, outputs)
        graph, static_input, outputs = self.graphs[key]
        static_input[:rows].copy_(batch)
        graph.replay()
        return tuple(output[:rows] for output in outputs)


def _as_tuple(outputs: Any) -> tuple[Any, ...]:
    if isinstance(outputs, Sequence) and not hasattr(outputs, "shape"):
        return tuple(outputs)
    return (outputs,)


def _layout(tensor: Any) -> Any:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
