"""Built-in plugin: the PyTorch engine backend (CPU or CUDA, FP16, CUDA graphs for static shapes).

It runs a model plugin's own network built from a checkpoint (``ModelSpec.torch_model``), or
an ONNX file converted with onnx2torch. On CUDA, inputs and outputs stay on the GPU as torch
tensors on the current stream; on the CPU, outputs come back as numpy arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtdet.engines.base import Engine, EngineOptions, ModelFile, Shape
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec


class _GraphRunner:
    """Replays one captured CUDA graph per batch size; outputs are valid until the next call."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def __call__(self, batch: Any) -> Any:
        import torch

        key = tuple(batch.shape)
        if key not in self.graphs:
            static_input = batch.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.module(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self.module(static_input)
            self.graphs[key] = (graph, static_input, static_output)
        graph, static_input, static_output = self.graphs[key]
        static_input.copy_(batch)
        graph.replay()
        return static_output


class TorchEngine:
    """A torch module with one image input and one output tensor (or a tuple of them)."""

    backend = "torch"

    def __init__(self, module: Any, source: Path, device: str, options: EngineOptions, output_names: list[str]) -> None:
        import torch

        self.torch_device = torch.device(device)
        self.dtype = torch.float16 if options.precision == "fp16" and device == "cuda" else torch.float32
        self.module = module.to(self.torch_device, self.dtype).eval()
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

        with torch.inference_mode():
            tensor = torch.as_tensor(batch).to(self.torch_device, self.dtype, non_blocking=True)
            outputs = self._runner(tensor)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if self.device == "cpu":
            return {n: o.float().numpy() for n, o in zip(self.output_names, outputs, strict=True)}
        return {n: o.float() for n, o in zip(self.output_names, outputs, strict=True)}

    def close(self) -> None:
        self.module = None
        self._runner = None


class TorchBackend:
    """Runs checkpoints through the model plugin's network, or ONNX through onnx2torch."""

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

    def load(self, model_file: ModelFile, spec: ModelSpec, device: str, options: EngineOptions) -> Engine:
        path = Path(model_file.path)
        if model_file.kind == "weights":
            if spec.torch_model is None:
                raise ModelError(f"{path}: model {spec.name!r} cannot build a torch network from a checkpoint")
            module = spec.torch_model(path)
            engine = TorchEngine(module, path, device, options, ["output"])
            engine.metadata = dict(getattr(module, "trtdet_metadata", {}))
            return engine
        if model_file.kind != "onnx":
            raise ModelError(f"{path}: the torch backend loads checkpoints or ONNX, not {model_file.kind} files")
        try:
            import onnx
            from onnx2torch import convert
        except ImportError as exc:
            raise ModelError(f"{path}: running ONNX on the torch backend needs onnx2torch (pip install onnx2torch)") from exc
        from trtdet.plugins import pm

        pm.hook.trtdet_torch_prepare(model=spec)
        model = onnx.load(str(path))
        names = [o.name for o in model.graph.output]
        engine = TorchEngine(convert(model), path, device, options, names)
        engine.metadata = {p.key: p.value for p in model.metadata_props}
        return engine


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(TorchBackend())
