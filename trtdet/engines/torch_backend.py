"""Built-in plugin: the PyTorch engine backend (CPU or CUDA, FP16, NHWC, CUDA graphs for static shapes).

It runs a model plugin's own network built from a checkpoint (``ModelSpec.torch_model``), or
an ONNX file converted by ``trtdet.onnx_torch`` (constants and shapes folded for the input size,
traceable by ``torch.export``; model plugins add converters for their ops through the
``trtdet_onnx_torch_ops`` hook). On CUDA, inputs and outputs stay on the GPU as torch
tensors on the current stream; on the CPU, outputs come back as numpy arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from trtdet.contracts.engine import BaseEngine, Engine, LoadsOnly, ModelFile, Shape
from trtdet.devices import parse_device, torch_device
from trtdet.engines.torch_run import run_network
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions

if TYPE_CHECKING:
    import torch

    from trtdet.context import RunContext
else:
    torch = lazy_import("torch")


class _GraphRunner:
    """Replays one captured CUDA graph per batch size; outputs are valid until the next call."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        #: Why capture failed (a network that reads shapes on the host cannot be captured).
        self.disabled_reason: str | None = None

    def _capture(self, batch: Any) -> tuple[Any, Any, Any]:
        static_input = batch.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.module(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            static_output = self.module(static_input)
        return graph, static_input, static_output

    def __call__(self, batch: Any) -> Any:
        if self.disabled_reason is not None:
            return self.module(batch)
        key = tuple(batch.shape)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(batch)
            except RuntimeError as exc:
                self.disabled_reason = str(exc).splitlines()[0]
                warnings.warn(f"CUDA graph capture failed, running eagerly: {self.disabled_reason}", stacklevel=2)
                return self.module(batch)
        graph, static_input, static_output = self.graphs[key]
        static_input.copy_(batch)
        graph.replay()
        return static_output


class OpenedModule(NamedTuple):
    """What opening a torch model gives: the module, its output names, its metadata, its input shape."""

    module: Any
    output_names: list[str]
    metadata: dict[str, str]
    input_shape: Shape = (None, 3, None, None)


class TorchEngine(BaseEngine):
    """A torch module with one image input and one output tensor (or a tuple of them).

    ``open_module()`` builds or converts the module; it runs on activation, which also moves
    the module to the device and precision. ``TorchEngine.from_module`` wraps a module that
    already exists (a network in training).
    """

    backend = "torch"

    def __init__(self, open_module: Callable[[], OpenedModule], source: Path, options: DetectorOptions) -> None:
        super().__init__(options.device)
        self.open_module = open_module
        self.source = source
        self.options = options
        self.input_name = "images"
        self.max_batch: int | None = None
        self.module: Any = None
        self._runner: Any = None

    @classmethod
    def from_module(
        cls,
        module: Any,
        options: DetectorOptions,
        *,
        output_names: Sequence[str] = ("output",),
        metadata: dict[str, str] | None = None,
        source: Path = Path("<module>"),
    ) -> TorchEngine:
        """An engine of an existing module (moved to ``options.device`` and set to eval mode on activation)."""
        return cls(lambda: OpenedModule(module, list(output_names), dict(metadata or {})), source, options)

    def activate_impl(self) -> None:
        module, output_names, metadata, input_shape = self.open_module()
        device, options = parse_device(self.device), self.options  # parsed once per activation
        self.torch_device = torch_device(device)
        cuda = device.is_cuda
        self.dtype = torch.float16 if options.precision == "fp16" and cuda else torch.float32
        # NHWC on the GPU: cuDNN's tensor-core convolutions work in it natively (NCHW costs
        # layout transposes around every convolution).
        self.memory_format = torch.channels_last if cuda else torch.contiguous_format
        self.module = module.to(self.torch_device, self.dtype).to(memory_format=self.memory_format).eval()
        self.output_names = output_names
        self.input_shape: Shape = input_shape
        self.output_shapes: dict[str, Shape] = {name: () for name in output_names}
        self.metadata: dict[str, str] = metadata
        self._runner = _GraphRunner(self.module) if cuda and bool(options.cuda_graphs) else self.module

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        return run_network(self._runner, batch, (self.torch_device, self.dtype, self.memory_format), self.output_names)

    def deactivate_impl(self) -> None:
        self.module = None
        self._runner = None


class TorchBackend(LoadsOnly):
    """Runs checkpoints through the model plugin's network, or ONNX through ``trtdet.onnx_torch``."""

    name = "torch"
    priority = 5  # ONNX Runtime is faster on the CPU; on CUDA this wins when ORT has no CUDA provider
    file_kinds = ("weights", "onnx")

    def unavailable_reason(self, device: str) -> str | None:
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed (pip install torch)"
        if device == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA GPU"
        return None

    def load(
        self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext | None = None
    ) -> Engine:
        path = Path(model_file.path)
        if model_file.kind == "weights" and spec.torch_model is None:
            raise ModelError(f"{path}: model {spec.name!r} cannot build a torch network from a checkpoint")
        if model_file.kind not in ("weights", "onnx"):
            raise ModelError(f"{path}: the torch backend loads checkpoints or ONNX, not {model_file.kind} files")
        from trtdet.engines.buckets import BucketEngine, wants_buckets

        if wants_buckets(spec, model_file):  # rect: the converted network is folded per input size
            return BucketEngine(TorchBuckets(self, model_file, spec, options), spec.input_size, options.device)
        return self.fixed_engine(model_file, spec, options)

    def fixed_engine(self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions) -> TorchEngine:
        """The engine of ``model_file`` at ``spec.input_size`` alone."""
        return TorchEngine(lambda: self._open(model_file, spec), Path(model_file.path), options)

    def _open(self, model_file: ModelFile, spec: ModelSpec) -> OpenedModule:
        """Build the network of a checkpoint, or convert an ONNX file (on activation)."""
        path = Path(model_file.path)
        if model_file.kind == "weights":
            assert spec.torch_model is not None
            module = spec.torch_model(path)
            return OpenedModule(module, ["output"], dict(getattr(module, "trtdet_metadata", {})))
        from trtdet.onnx_torch import convert
        from trtdet.onnx_torch.graph import load_model

        model, _label = load_model(path)
        initializers = {tensor.name for tensor in model.graph.initializer}
        first_input = next(i for i in model.graph.input if i.name not in initializers)  # load_model checked there is one
        dims = [d.dim_value if d.HasField("dim_value") else None for d in first_input.type.tensor_type.shape.dim]
        # A file fixed at its own size runs at that size (adapt_spec takes it from input_shape).
        size = None if len(dims) == 4 and None not in dims[2:] else spec.input_size
        module = convert(model, input_size=size, source=str(path))
        first = module.input_shapes[module.input_names[0]]
        return OpenedModule(module, module.output_names, dict(module.metadata), (None, *first))


class TorchBuckets:
    """``BucketSource`` of the torch backend: the ONNX file converted for each input size (seconds, no compile)."""

    backend = "torch"

    def __init__(self, backend: TorchBackend, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions) -> None:
        self.torch_backend, self.model_file, self.spec, self.options = backend, model_file, spec, options

    def engine(self, size: tuple[int, int]) -> Engine:
        import dataclasses

        return self.torch_backend.fixed_engine(self.model_file, dataclasses.replace(self.spec, input_size=size), self.options)

    def is_built(self, size: tuple[int, int]) -> bool:
        return True

    def fallback(self, size: tuple[int, int]) -> Engine:
        return self.engine(size)

    def describe(self) -> Any:
        from trtdet.engines.buckets import describe_onnx

        return describe_onnx(self.model_file.path, None)


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(TorchBackend())
