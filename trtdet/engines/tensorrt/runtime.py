"""A deserialized TensorRT engine run with ``execute_async_v3`` on torch CUDA memory.

Zero copy: TensorRT reads and writes torch tensors through ``data_ptr()``, on the caller's
current torch stream (the pipeline's stream), so no host round trip separates preprocess,
inference and decode. Written to the documented TensorRT Python API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``); no GPU here can execute it (TensorRT-RTX does
not support the H100's compute capability 9.0 and the full TensorRT is not installable on
the CPU machine), so this module is untested by execution: see tests/trtdet/engines/tensorrt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.engine import BaseEngine, Shape
from trtdet.engines.tensorrt.flavour import Flavour
from trtdet.engines.tensorrt.trt_objects import make_logger
from trtdet.errors import ModelError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def _dims(shape: Any) -> Shape:
    return tuple(None if int(d) < 0 else int(d) for d in shape)


class TensorRTEngine(BaseEngine):
    """An engine and one execution context; call it with a ``[B, C, H, W]`` batch.

    Deserialising the plan, creating the context and the warm-up run happen on activation.
    Outputs are torch CUDA tensors ordered on the current stream (no synchronisation),
    whatever the input: a numpy batch is uploaded first (the engine contract).
    With ``cuda_graph=True`` each batch size is captured once into a CUDA graph and replayed.
    """

    backend = "tensorrt"

    def __init__(
        self,
        path: Path,
        metadata: ArtifactMetadata,
        plan: bytes,
        flavour: Flavour,
        *,
        cuda_graph: bool = False,
        warmup: int = 1,
    ) -> None:
        super().__init__("cuda")
        self.path = Path(path)
        self.flavour = flavour
        self.cuda_graph = cuda_graph
        self.max_batch: int | None = metadata.max_batch
        #: The (largest) input height and width: a rect engine takes any size up to it.
        self.input_size: tuple[int, int] = tuple(metadata.input_size)  # type: ignore[assignment]
        self.metadata: dict[str, str] = metadata.as_strings()
        self._plan = plan
        self._warmup = warmup

    def activate_impl(self) -> None:
        trt = self.flavour.module
        path, flavour = self.path, self.flavour
        self._torch = torch
        self._trt = trt
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self._plan)
        if self._engine is None:
            raise ModelError(
                f"{path}: {flavour.label} cannot deserialize the engine: {self._logger.last_error()}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"{path}: cannot create an execution context: {self._logger.last_error()}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected 1 image input, got {len(inputs)}: {inputs}")
        self.input_name = inputs[0]
        self._output_names = [n for n in names if n != self.input_name]
        self.input_shape: Shape = _dims(self._engine.get_tensor_shape(self.input_name))
        self.output_shapes: dict[str, Shape] = {
            n: _dims(self._engine.get_tensor_shape(n)) for n in self._output_names
        }
        self._dtypes = {n: self._torch_dtype(self._engine.get_tensor_dtype(n)) for n in names}
        self._device = torch.device("cuda", torch.cuda.current_device())
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, dict[str, Any]]] = {}
        for _ in range(self._warmup):
            self._warm_up()

    def _torch_dtype(self, trt_dtype: Any) -> Any:
        return self._torch.from_numpy(np.zeros(0, dtype=self._trt.nptype(trt_dtype))).dtype

    def _warm_up(self) -> None:
        # batch 1 at the largest H x W where they are dynamic (the rect letterbox's engines)
        fallback = (1, 1, *self.input_size)
        shape = tuple(fallback[i] if d is None else d for i, d in enumerate(self.input_shape))
        batch = self._torch.zeros(shape, dtype=self._dtypes[self.input_name], device=self._device)
        self.infer_impl(batch)
        self._torch.cuda.current_stream(self._device).synchronize()

    def _bind(self, batch: Any) -> dict[str, Any]:
        """Set the input shape and every tensor address; allocate outputs of the inferred shapes."""
        context = self._context
        if not context.set_input_shape(self.input_name, tuple(batch.shape)):
            raise ModelError(f"{self.path}: batch shape {tuple(batch.shape)} is outside the engine's profile")
        context.set_tensor_address(self.input_name, batch.data_ptr())
        outputs = {}
        for name in self._output_names:
            shape = tuple(context.get_tensor_shape(name))
            outputs[name] = self._torch.empty(shape, dtype=self._dtypes[name], device=self._device)
            context.set_tensor_address(name, outputs[name].data_ptr())
        return outputs

    def _execute(self, stream: Any) -> None:
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed: {self._logger.last_error()}")

    def _run_graph(self, batch: Any, stream: Any) -> dict[str, Any]:
        torch = self._torch
        key = tuple(batch.shape)
        if key not in self._graphs:
            static_input = torch.empty_like(batch)
            static_input.copy_(batch)
            outputs = self._bind(static_input)
            capture_stream = torch.cuda.Stream(self._device)
            capture_stream.wait_stream(stream)
            # TensorRT applies deferred shape/address updates on the first enqueue: run once
            # outside the capture, then capture a clean enqueue.
            self._execute(capture_stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=capture_stream):
                self._execute(capture_stream)
            stream.wait_stream(capture_stream)
            self._graphs[key] = (graph, static_input, outputs)
        graph, static_input, outputs = self._graphs[key]
        static_input.copy_(batch)
        with torch.cuda.stream(stream):
            graph.replay()
            return {name: value.clone() for name, value in outputs.items()}

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        torch = self._torch
        tensor = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
        tensor = tensor.to(device=self._device, dtype=self._dtypes[self.input_name]).contiguous()
        if self.max_batch is not None and not 1 <= tensor.shape[0] <= self.max_batch:
            raise ValueError(f"batch of {tensor.shape[0]} outside the engine's range 1..{self.max_batch}")
        stream = torch.cuda.current_stream(self._device)
        if self.cuda_graph:
            outputs = self._run_graph(tensor, stream)
        else:
            outputs = self._bind(tensor)
            self._execute(stream)
        return outputs

    def deactivate_impl(self) -> None:
        self._graphs.clear()
        self._context = None
        self._engine = None
        self._runtime = None
