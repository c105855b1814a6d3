"""Which model file a run uses: the one the options name, or the model's shipped default."""

from __future__ import annotations

from pathlib import Path

from trtdet.engines.base import ModelFile
from trtdet.errors import ModelError, UsageError
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions


def resolve_model_file(spec: ModelSpec, options: DetectorOptions) -> ModelFile:
    """The file to run: ``options.engine``, ``.onnx`` or ``.weights`` (at most one), else the default."""
    if options.engine is not None:
        path = _existing(options.engine)
        return ModelFile(path, "package" if is_package(path) else "engine")
    if options.onnx is not None:
        return ModelFile(_existing(options.onnx), "onnx")
    if options.weights is not None:
        return ModelFile(_existing(options.weights), "weights")
    if spec.default_model is None:
        raise UsageError(f"model {spec.name!r} ships no default model; pass --weights, --onnx or --engine")
    path = Path(spec.default_model())
    if path.suffix == ".engine":
        return ModelFile(path, "engine")
    return ModelFile(path, "package" if path.suffix == ".pt2" else "onnx")


def is_package(path: Path) -> bool:
    """Whether an ``--engine`` file is an AOTInductor package (a zip archive), not a TensorRT engine."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    return path
