"""Checkpoints to ONNX for backends that cannot load checkpoints, exported once and cached."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from trtdet.cache import cache_dir, file_sha256
from trtdet.contracts.engine import EngineBackend, ModelFile
from trtdet.errors import UsageError
from trtdet.model import ModelSpec


def export_cached(spec: ModelSpec, weights: Path, input_size: tuple[int, int]) -> Path:
    """Export ``weights`` to ONNX once; later runs with the same content reuse the file."""
    if spec.exporter is None:
        raise UsageError(f"model {spec.name!r} has no checkpoint exporter; pass --onnx or --engine instead")
    digest = file_sha256(weights)[:20]
    target = cache_dir() / "exports" / f"{spec.name}-{digest}-{input_size[0]}x{input_size[1]}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per export: processes exporting the same checkpoint at once must not
    # write (or rename away) each other's file; the last rename wins with a complete one.
    fd, partial_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".partial.onnx", dir=target.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        spec.exporter(weights, partial, input_size=input_size, dynamic_batch=True)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def prepare_for_backend(spec: ModelSpec, model_file: ModelFile, backend: EngineBackend) -> ModelFile:
    """Export a checkpoint to ONNX (cached, at ``spec.input_size``) when ``backend`` cannot load checkpoints."""
    if model_file.kind == "weights" and "weights" not in backend.file_kinds:
        return ModelFile(export_cached(spec, model_file.path, spec.input_size), "onnx")
    return model_file
