"""Choosing the model file and engine backend for a run."""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from trtdet.cache import cache_dir, file_sha256
from trtdet.engines.base import Engine, EngineBackend, ModelFile
from trtdet.errors import ModelError, UsageError
from trtdet.model import ModelSpec
from trtdet.plugins import list_engine_backends

BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime", "torch")


def resolve_model_file(
    spec: ModelSpec,
    *,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
) -> ModelFile:
    """The file to run: the one given, a (cached) ONNX export of ``weights``, or the default."""
    given = [(k, v) for k, v in (("weights", weights), ("onnx", onnx), ("engine", engine)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"give at most one of --weights, --onnx, --engine (got {', '.join(k for k, _ in given)})")
    if engine is not None:
        return ModelFile(_existing(engine), "engine")
    if onnx is not None:
        return ModelFile(_existing(onnx), "onnx")
    if weights is not None:
        return ModelFile(_existing(weights), "weights")
    if spec.default_model is None:
        raise UsageError(f"model {spec.name!r} ships no default model; pass --weights, --onnx or --engine")
    path = Path(spec.default_model())
    return ModelFile(path, "engine" if path.suffix == ".engine" else "onnx")


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    return path


def export_cached(spec: ModelSpec, weights: Path, input_size: tuple[int, int]) -> Path:
    """Export ``weights`` to ONNX once; later runs with the same content reuse the file."""
    if spec.exporter is None:
        raise UsageError(f"model {spec.name!r} has no checkpoint exporter; pass --onnx or --engine instead")
    digest = file_sha256(weights)[:20]
    target = cache_dir() / "exports" / f"{spec.name}-{digest}-{input_size[0]}x{input_size[1]}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.onnx")
    spec.exporter(weights, partial, input_size=input_size, dynamic_batch=True)
    partial.replace(target)
    return target


def _loads(backend: EngineBackend, kind: str) -> bool:
    # Checkpoints also reach ONNX backends, through the model's exporter.
    return kind in backend.file_kinds or (kind == "weights" and "onnx" in backend.file_kinds)


def choose_backend(name: str, model_file: ModelFile, device: str) -> EngineBackend:
    """The backend called ``name``, or for ``auto`` the best available one for this file and device."""
    backends = list_engine_backends()
    if name != "auto":
        if name not in backends:
            known = ", ".join(sorted(backends))
            raise UsageError(f"unknown or uninstalled backend {name!r} (installed: {known})")
        backend = backends[name]
        reason = backend.unavailable_reason(device)
        if reason:
            raise UsageError(f"backend {name!r} cannot run on {device}: {reason}")
        if not _loads(backend, model_file.kind):
            raise UsageError(f"backend {name!r} cannot load {model_file.kind} files ({model_file.path})")
        return backend
    candidates = [b for b in backends.values() if _loads(b, model_file.kind)]
    reasons = []
    for backend in sorted(candidates, key=lambda b: -b.priority):
        reason = backend.unavailable_reason(device)
        if reason is None:
            return backend
        reasons.append(f"{backend.name}: {reason}")
    detail = "; ".join(reasons) or f"no installed backend loads {model_file.kind} files"
    raise UsageError(f"no engine backend can run {model_file.path} on {device} ({detail})")


def parse_class_names(value: str) -> tuple[str, ...] | None:
    """Class names from metadata: a JSON list, or Ultralytics' ``{0: 'person', ...}`` literal."""
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if isinstance(parsed, dict):
        try:
            return tuple(str(parsed[i]) for i in range(len(parsed)))
        except KeyError:
            return None
    if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
        return tuple(parsed)
    return None


def prepare_for_backend(spec: ModelSpec, model_file: ModelFile, backend: EngineBackend, input_size: tuple[int, int]) -> ModelFile:
    """Export a checkpoint to ONNX (cached) when the chosen backend cannot load checkpoints."""
    if model_file.kind == "weights" and "weights" not in backend.file_kinds:
        return ModelFile(export_cached(spec, model_file.path, input_size), "onnx")
    return model_file


def adapt_spec(spec: ModelSpec, engine: Engine) -> ModelSpec:
    """The spec as the (active) engine's model file describes it: see ``adapt_spec_to_file``."""
    return adapt_spec_to_file(spec, engine.metadata, engine.input_shape)


def adapt_spec_to_file(spec: ModelSpec, metadata: Mapping[str, str], input_shape: Sequence[object]) -> ModelSpec:
    """Take class names (unless ``spec.names_from_model`` is False) and a fixed input size from a model file.

    ``metadata`` is the file's metadata (``names``: a JSON list or Ultralytics' literal);
    ``input_shape`` its ``[B, C, H, W]`` input, whose H and W win when they are fixed.
    """
    changes: dict[str, object] = {}
    raw_names = metadata.get("names") if spec.names_from_model else None
    names = parse_class_names(raw_names) if raw_names else None
    if names and names != spec.class_names:
        changes["class_names"] = names
    shape = tuple(input_shape)
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        changes["input_size"] = (shape[2], shape[3])
    return dataclasses.replace(spec, **changes) if changes else spec
