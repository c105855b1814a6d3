"""Device names: ``cpu``, ``cuda`` (torch's current GPU), ``cuda:N`` (GPU N) and ``auto``.

``auto`` (every command's and ``trtdet.load``'s default) is ``cuda`` when the CUDA driver
shows this process a GPU, else ``cpu``; it is resolved when options are made
(``resolve_device``), so code past that point sees only the other three.

Parsing is pure string work (options are checked before torch is imported); whether the
GPU exists is checked when a detector is loaded (``check_present``, ``cuda`` and ``cuda:N``). Everything a detector
does on its GPU -- loading the engine, allocating buffers, creating streams, compiling and
launching numba kernels -- runs inside ``on_device(device)``, which makes that GPU torch's
(and so numba's) current one; plugins' hooks keep receiving the device *kind* (``cpu`` or
``cuda``) and allocate on the current GPU.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trtdet.errors import UsageError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

_PATTERN = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` (``cpu``/``cuda``) and, for ``cuda:N``, ``index``."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def parse_device(text: str) -> Device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``Device``; a one-line ``UsageError`` otherwise."""
    match = _PATTERN.match(str(text).strip().lower()) if isinstance(text, str) else None
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise UsageError(f"device: expected 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...), got {text!r}")
    index = match.group(2)
    return Device(match.group(1), None if index is None else int(index))


def as_device(device: str | Device) -> Device:
    """``device`` itself when it is a ``Device`` (already parsed: a ``RunContext``'s), else ``parse_device(device)``."""
    return device if isinstance(device, Device) else parse_device(device)


#: The device name that picks the GPU when one is visible, else the CPU.
AUTO = "auto"


def resolve_device(text: str) -> str:
    """The canonical device name, with ``auto`` resolved (``auto_device``); bad names as ``parse_device``."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return auto_device()
    return normalize_device(text)


#: Modules of which one must be installed for ``auto`` to pick the GPU (a GPU runtime trtdet's backends
#: use), besides a CUDA (or ROCm) build of torch.
GPU_RUNTIME_MODULES = ("tensorrt", "tensorrt_rtx")
#: Distributions that give ONNX Runtime its CUDA provider.
GPU_RUNTIME_DISTRIBUTIONS = ("onnxruntime-gpu",)


def _torch_for_gpus(spec: Any) -> bool:
    """Whether the torch that ``spec`` finds is a CUDA or ROCm build, read from its ``version.py``
    (``cuda: Optional[str] = None`` in a CPU build) without importing it; True when unreadable."""
    from pathlib import Path

    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except (OSError, TypeError):
        return True
    builds = [line for line in text.splitlines() if line.startswith(("cuda", "hip"))]
    return not builds or any(not line.rstrip().endswith("None") for line in builds)


def _gpu_runtime_installed() -> bool:
    """Whether a GPU runtime is installed (found, not imported: importing torch takes seconds)."""
    import importlib.metadata
    import importlib.util

    if any(importlib.util.find_spec(name) is not None for name in GPU_RUNTIME_MODULES):
        return True
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None and _torch_for_gpus(torch_spec):
        return True
    for name in GPU_RUNTIME_DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return True
    return False


@functools.cache
def auto_device() -> str:
    """``"cuda"`` when the CUDA driver shows this process a GPU and a GPU runtime is installed
    (TensorRT, a CUDA build of PyTorch or onnxruntime-gpu), else ``"cpu"``: a plain install (or
    a CPU build of torch) on a GPU machine still runs, on the CPU.

    Asks the driver (``libcuda``) directly and only looks the runtimes up, so choosing the CPU
    imports neither torch nor numba. Cached: a process's visible GPUs do not change.
    """
    return "cuda" if _driver_gpus() > 0 and _gpu_runtime_installed() else "cpu"


def normalize_device(text: str) -> str:
    """The canonical spelling of a device name (``" CUDA:1 "`` -> ``"cuda:1"``)."""
    return str(parse_device(text))


def device_kind(text: str | Device) -> str:
    """``"cpu"`` or ``"cuda"`` for any valid device name (or ``Device``)."""
    return as_device(text).kind


def is_cuda(text: str | Device) -> bool:
    """Whether ``text`` names a CUDA device (``cuda`` or ``cuda:N``), or is one."""
    return device_kind(text) == "cuda"


def _driver_gpus() -> int:
    """GPUs the CUDA driver (``libcuda``) shows this process; 0 without a driver or on any failure."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:
        return 0
    return int(count.value)


def visible_gpus() -> int:
    """How many CUDA GPUs this process sees: torch's count for a CUDA build of torch, else the driver's.

    A CPU-only torch (or none) says nothing about the GPUs onnxruntime or TensorRT could use,
    so then the CUDA driver is asked directly (0 without a driver or a broken one).
    """
    try:
        import torch
    except ImportError:
        return _driver_gpus()
    if getattr(torch.version, "cuda", None) is None and getattr(torch.version, "hip", None) is None:
        return _driver_gpus()
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken driver reads as no GPU
        return 0


def check_present(text: str | Device) -> None:
    """A one-line ``UsageError`` when ``cuda`` or ``cuda:N`` names a GPU this process cannot see.

    ``device cuda: no CUDA GPU is visible to this process`` for both spellings when there is
    none (instead of every backend's reason for refusing); ``only N ... visible`` for an index
    past the last one.
    """
    device = as_device(text)
    if not device.is_cuda:
        return
    count = visible_gpus()
    if count == 0:
        raise UsageError(f"device {device}: no CUDA GPU is visible to this process")
    if device.index is None or device.index < count:
        return
    plural = "GPU is" if count == 1 else "GPUs are"
    raise UsageError(f"device {device}: only {count} CUDA {plural} visible (cuda:0..cuda:{count - 1})")


def torch_device(text: str | Device) -> Any:
    """The ``torch.device`` for a device name or ``Device``; plain ``cuda`` is torch's current GPU, made explicit."""
    device = as_device(text)
    if not device.is_cuda:
        return torch.device("cpu")
    index = torch.cuda.current_device() if device.index is None else device.index
    return torch.device("cuda", index)


def on_device(text: str | Device) -> contextlib.AbstractContextManager[Any]:
    """Make the device's GPU torch's current one for the block (nothing for ``cpu`` or plain ``cuda``).

    ``text`` is a device name or a ``Device`` (a ``RunContext``'s, used as it is, not parsed again).
    """
    device = as_device(text)
    if device.index is None:
        return contextlib.nullcontext()

    return torch.cuda.device(device.index)
