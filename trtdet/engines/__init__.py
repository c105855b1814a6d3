"""Engine backends: ONNX Runtime here; TensorRT and PyTorch in their own modules."""

from trtdet.contracts.engine import Engine, EngineBackend, ModelFile

__all__ = ["Engine", "EngineBackend", "ModelFile"]
