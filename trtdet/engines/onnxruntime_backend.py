"""Built-in plugin: the ONNX Runtime engine backend (CPU; CUDA execution provider when present)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.contracts.engine import BaseEngine, Engine, LoadsOnly, ModelFile, Shape
from trtdet.devices import parse_device, torch_device
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

    from trtdet.context import RunContext
else:
    ort = lazy_import("onnxruntime")
    torch = lazy_import("torch")


def _dim(value: Any) -> int | str | None:
    return value if isinstance(value, (int, str)) else None


class OnnxRuntimeEngine(BaseEngine):
    """An ONNX model in an ``onnxruntime.InferenceSession``, created on activation.

    Inputs may be numpy arrays or torch tensors; outputs are numpy on ``device="cpu"`` and
    torch CUDA tensors on the CUDA device (the engine contract), float32.
    """

    backend = "onnxruntime"

    def __init__(self, path: Path, providers: list[Any], device: str = "cpu") -> None:
        super().__init__(device)
        self.path = path
        self.providers = list(providers)
        self.session: Any = None
        self._torch_device: Any = None

    def activate_impl(self) -> None:
        path = self.path
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: onnxruntime cannot load it: {first_line}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected 1 image input, got {len(inputs)}: {[i.name for i in inputs]}")
        self.session = session
        self.input_name = inputs[0].name
        self.input_shape: Shape = tuple(_dim(d) for d in inputs[0].shape)
        self.output_shapes: dict[str, Shape] = {
            o.name: tuple(_dim(d) for d in o.shape) for o in session.get_outputs()
        }
        batch = self.input_shape[0] if self.input_shape else None
        self.max_batch: int | None = batch if isinstance(batch, int) else None
        self.providers = session.get_providers()
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self._output_names = list(self.output_shapes)
        if self.device != "cpu":
            self._torch_device = torch_device(self.device)
        self._dtype = np.float16 if "float16" in inputs[0].type else np.float32

    def deactivate_impl(self) -> None:
        self.session = None

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        if not isinstance(batch, np.ndarray):  # a torch tensor (a CUDA preprocessor's batch)
            batch = batch.detach().cpu().numpy()
        batch = np.ascontiguousarray(batch, dtype=self._dtype)
        results = self.session.run(self._output_names, {self.input_name: batch})
        outputs = {name: np.asarray(value, dtype=np.float32) for name, value in zip(self._output_names, results, strict=True)}
        if self.device == "cpu":
            return outputs
        return {name: torch.from_numpy(value).to(self._torch_device, non_blocking=False) for name, value in outputs.items()}


class OnnxRuntimeBackend(LoadsOnly):
    """Runs ``.onnx`` files with ONNX Runtime."""

    name = "onnxruntime"
    priority = 10
    file_kinds = ("onnx",)

    def unavailable_reason(self, device: str) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        return None

    def load(
        self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext | None = None
    ) -> Engine:
        path = Path(model_file.path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        if path.stat().st_size == 0:
            raise ModelError(f"{path}: model file is empty")
        providers = ["CPUExecutionProvider"]
        device = context.device if context is not None else parse_device(options.device)
        if device.is_cuda:
            cuda_provider: Any = "CUDAExecutionProvider"
            if device.index is not None:
                cuda_provider = ("CUDAExecutionProvider", {"device_id": device.index})
            providers.insert(0, cuda_provider)
        return OnnxRuntimeEngine(path, providers, options.device)


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(OnnxRuntimeBackend())
