"""Which engine backend runs a model file: the one named, or for ``auto`` the best available."""

from __future__ import annotations

from trtdet.contracts.engine import EngineBackend, ModelFile
from trtdet.devices import Device, as_device
from trtdet.errors import UsageError
from trtdet.plugins import list_engine_backends


def _loads(backend: EngineBackend, kind: str) -> bool:
    # Checkpoints also reach ONNX backends, through the model's exporter.
    return kind in backend.file_kinds or (kind == "weights" and "onnx" in backend.file_kinds)


def auto_priority(backend: EngineBackend, device: str) -> int:
    """A backend's rank for ``auto`` on ``device``: its ``auto_priority(device)`` (default: ``priority``)."""
    return int(backend.auto_priority(device))


def choose_backend(name: str, model_file: ModelFile, device: str | Device, passed_over: list[str] | None = None) -> EngineBackend:
    """The backend called ``name``, or for ``auto`` the best available one for this file and device.

    Backends are asked about the device's kind (``cpu``/``cuda``); ``device`` (a name, or the
    ``Device`` ``trtdet.load`` parsed once) may name a GPU (``cuda:1``). For ``auto``, ``passed_over`` (when given) receives ``"backend: why not"`` for each backend
    ranked above the one chosen, so the caller can say why it was chosen.
    """
    backends = list_engine_backends()
    kind = as_device(device).kind
    if name != "auto":
        if name not in backends:
            known = ", ".join(sorted(backends))
            raise UsageError(f"unknown or uninstalled backend {name!r} (installed: {known})")
        backend = backends[name]
        reason = backend.unavailable_reason(kind)
        if reason:
            raise UsageError(f"backend {name!r} cannot run on {device}: {reason}")
        if not _loads(backend, model_file.kind):
            raise UsageError(f"backend {name!r} cannot load {model_file.kind} files ({model_file.path})")
        return backend
    candidates = [b for b in backends.values() if _loads(b, model_file.kind)]
    reasons = []
    for backend in sorted(candidates, key=lambda b: -auto_priority(b, kind)):
        reason = backend.unavailable_reason(kind)
        if reason is None:
            if passed_over is not None:
                passed_over.extend(reasons)
            return backend
        reasons.append(f"{backend.name}: {reason}")
    detail = "; ".join(reasons) or f"no installed backend loads {model_file.kind} files"
    raise UsageError(f"no engine backend can run {model_file.path} on {device} ({detail})")
