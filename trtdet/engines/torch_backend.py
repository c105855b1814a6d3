"""Built-in plugin: the PyTorch engine backend (CPU or CUDA, FP16, NHWC, CUDA graphs for static shapes).

It runs a model plugin's own network built from a checkpoint (``ModelSpec.torch_model``), or
an ONNX file converted by ``trtdet.onnx_torch`` (constants and shapes folded for the input size,
traceable by ``torch.export``; model plugins add converters for their ops through the
``trtdet_onnx_torch_ops`` hook). On CUDA, inputs and outputs stay on the GPU as torch
tensors on the current stream; on the CPU, outputs come back as numpy arrays.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from trtdet.engines.base import Engine, ModelFile, Shape
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions


class _GraphRunner:
    """Replays one captured CUDA graph per batch size; outputs are valid until the next call."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        #: Why capture failed (a network that reads shapes on the host cannot be captured).
        self.disabled_reason: str | None = None

    def _capture(self, batch: Any) -> tuple[Any, Any, Any]:
        import torch

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
                import warnings

                self.disabled_reason = str(exc).splitlines()[0]
                warnings.warn(f"CUDA graph capture failed, running eagerly: {self.disabled_reason}", stacklevel=2)
                return self.module(batch)
        graph, static_input, static_output = self.graphs[key]
        static_input.copy_(batch)
        graph.replay()
        return static_output


class TorchEngine:
    """A torch module with one image input and one output tensor (or a tuple of them)."""

    backend = "torch"

    def __init__(self, module: Any, source: Path, options: DetectorOptions, output_names: list[str]) -> None:
        import torch

        device = options.device
        self.torch_device = torch.device(device)
        self.dtype = torch.float16 if options.precision == "fp16" and device == "cuda" else torch.float32
        # NHWC on the GPU: cuDNN's tensor-core convolutions work in it natively (NCHW costs
        # layout transposes around every convolution).
        self.memory_format = torch.channels_last if device == "cuda" else torch.contiguous_format
        self.module = module.to(self.torch_device, self.dtype).to(memory_format=self.memory_format).eval()
        self.source = source
        self.device = device
        self.input_name = "images"
        self.input_shape: Shape = (None, 3, None, None)
        self.output_names = output_names
        self.output_shapes: dict[str, Shape] = {name: () for name in output_names}
        self.max_batch: int | None = None
        self.metadata: dict[str, str] = {}
        self._runner = _GraphRunner(self.module) if device == "cuda" and options.cuda_graphs else self.module

    def __call__(self, batch: Any) -> dict[str, Any]:
        import torch

        # fp32 means fp32: cuDNN would otherwise run convolutions in TF32 (10-bit mantissa).
        exact = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
        with torch.inference_mode(), exact if self.dtype == torch.float32 else contextlib.nullcontext():
            tensor = torch.as_tensor(batch).to(self.torch_device, self.dtype, non_blocking=True)
            outputs = self._runner(tensor.contiguous(memory_format=self.memory_format))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if self.device == "cpu":
            return {n: o.float().numpy() for n, o in zip(self.output_names, outputs, strict=True)}
        # CUDA outputs stay in the network's precision, as a TensorRT engine's do: the
        # decoders read float16 directly, so no extra pass over the output is spent on a cast.
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self.module = None
        self._runner = None


class TorchBackend:
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

    def load(self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions) -> Engine:
        path = Path(model_file.path)
        if model_file.kind == "weights":
            if spec.torch_model is None:
                raise ModelError(f"{path}: model {spec.name!r} cannot build a torch network from a checkpoint")
            module = spec.torch_model(path)
            engine = TorchEngine(module, path, options, ["output"])
            engine.metadata = dict(getattr(module, "trtdet_metadata", {}))
            return engine
        if model_file.kind != "onnx":
            raise ModelError(f"{path}: the torch backend loads checkpoints or ONNX, not {model_file.kind} files")
        from trtdet.onnx_torch import convert
        from trtdet.onnx_torch.graph import load_model

        model, _label = load_model(path)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.input[0].type.tensor_type.shape.dim]
        # A file fixed at its own size runs at that size (adapt_spec takes it from input_shape).
        size = None if len(dims) == 4 and None not in dims[2:] else spec.input_size
        module = convert(model, input_size=size, source=str(path))
        engine = TorchEngine(module, path, options, module.output_names)
        first = module.input_shapes[module.input_names[0]]
        engine.input_shape = (None, *first)
        engine.metadata = dict(module.metadata)
        return engine


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(TorchBackend())
