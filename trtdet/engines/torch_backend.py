"""Built-in plugin: the PyTorch engine backend (CPU or CUDA, FP16, NHWC, CUDA graphs for static shapes).

It runs a model plugin's own network built from a checkpoint (``ModelSpec.torch_model``), or
an ONNX file converted with onnx2torch. On CUDA, inputs and outputs stay on the GPU as torch
tensors on the current stream; on the CPU, outputs come back as numpy arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trtdet.engines.base import BaseEngine, Engine, EngineOptions, ModelFile, Shape
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec


def fold_initializer_casts(model: Any) -> Any:
    """Replace ``Cast(initializer)`` with a converted initializer (fp16-weight ONNX files).

    onnx2torch has no converter for opset-19 ``Cast`` and needs convolution weights to be
    initializers, so weights stored in fp16 and cast at run time are cast here once.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    kept = []
    for node in graph.node:
        source = node.input[0] if node.op_type == "Cast" and node.input else None
        if source in initializers:
            to = next(a.i for a in node.attribute if a.name == "to")
            array = numpy_helper.to_array(initializers[source]).astype(onnx.helper.tensor_dtype_to_np_dtype(to))
            graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
            consumers[source] -= 1
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    unused = [init for init in graph.initializer if consumers.get(init.name, 1) == 0]
    for init in unused:
        graph.initializer.remove(init)
    return model


#: Opset-19 revisions that only add float8 types (and Cast's float8 ``saturate``): the
#: earlier converters onnx2torch has are exact for every other type.
_OPSET19_ALIASES = (("Cast", 13), ("Constant", 13), ("Reshape", 14), ("Shape", 15))
_aliases_registered = False


def register_opset19_aliases() -> None:
    """Let onnx2torch convert opset-19 files that use no float8 (idempotent)."""
    global _aliases_registered
    if _aliases_registered:
        return
    from onnx2torch.node_converters.registry import add_converter, get_converter

    for op_type, earlier in _OPSET19_ALIASES:
        try:
            get_converter(op_type, 19)
        except NotImplementedError:
            add_converter(operation_type=op_type, version=19)(get_converter(op_type, earlier))
    _aliases_registered = True


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


#: What opening a torch model gives: the module, its output names, its metadata.
OpenedModule = tuple[Any, list[str], dict[str, str]]


class TorchEngine(BaseEngine):
    """A torch module with one image input and one output tensor (or a tuple of them).

    ``open_module()`` builds or converts the module; it runs on activation, which also moves
    the module to the device and precision. ``TorchEngine.from_module`` wraps a module that
    already exists (a network in training).
    """

    backend = "torch"

    def __init__(self, open_module: Callable[[], OpenedModule], source: Path, device: str, options: EngineOptions) -> None:
        super().__init__(device)
        self.open_module = open_module
        self.source = source
        self.options = options
        self.input_name = "images"
        self.input_shape: Shape = (None, 3, None, None)
        self.max_batch: int | None = None
        self.module: Any = None
        self._runner: Any = None

    @classmethod
    def from_module(
        cls,
        module: Any,
        device: str,
        options: EngineOptions,
        *,
        output_names: Sequence[str] = ("output",),
        metadata: dict[str, str] | None = None,
        source: Path = Path("<module>"),
    ) -> TorchEngine:
        """An engine of an existing module (moved to ``device`` and set to eval mode on activation)."""
        return cls(lambda: (module, list(output_names), dict(metadata or {})), source, device, options)

    def activate_impl(self) -> None:
        import torch

        module, output_names, metadata = self.open_module()
        device, options = self.device, self.options
        self.torch_device = torch.device(device)
        self.dtype = torch.float16 if options.precision == "fp16" and device == "cuda" else torch.float32
        # NHWC on the GPU: cuDNN's tensor-core convolutions work in it natively (NCHW costs
        # layout transposes around every convolution).
        self.memory_format = torch.channels_last if device == "cuda" else torch.contiguous_format
        self.module = module.to(self.torch_device, self.dtype).to(memory_format=self.memory_format).eval()
        self.output_names = output_names
        self.output_shapes: dict[str, Shape] = {name: () for name in output_names}
        self.metadata: dict[str, str] = metadata
        self._runner = _GraphRunner(self.module) if device == "cuda" and options.cuda_graphs else self.module

    def infer_impl(self, batch: Any) -> dict[str, Any]:
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

    def deactivate_impl(self) -> None:
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
        if model_file.kind == "weights" and spec.torch_model is None:
            raise ModelError(f"{path}: model {spec.name!r} cannot build a torch network from a checkpoint")
        if model_file.kind not in ("weights", "onnx"):
            raise ModelError(f"{path}: the torch backend loads checkpoints or ONNX, not {model_file.kind} files")
        return TorchEngine(lambda: self._open(model_file, spec), path, device, options)

    def _open(self, model_file: ModelFile, spec: ModelSpec) -> OpenedModule:
        """Build the network of a checkpoint, or convert an ONNX file (on activation)."""
        path = Path(model_file.path)
        if model_file.kind == "weights":
            assert spec.torch_model is not None
            module = spec.torch_model(path)
            return module, ["output"], dict(getattr(module, "trtdet_metadata", {}))
        try:
            import onnx
            from onnx2torch import convert
        except ImportError as exc:
            raise ModelError(f"{path}: running ONNX on the torch backend needs onnx2torch (pip install onnx2torch)") from exc
        from trtdet.plugins import pm

        register_opset19_aliases()
        pm.hook.trtdet_torch_prepare(model=spec)
        model = fold_initializer_casts(onnx.load(str(path)))
        names = [o.name for o in model.graph.output]
        return convert(model), names, {p.key: p.value for p in model.metadata_props}


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(TorchBackend())
