"""Which TensorRT to use: NVIDIA's full ``tensorrt`` or TensorRT-RTX (``tensorrt_rtx_bindings``).

Both expose the same Python API under different module names, so one code path serves both;
the differences that matter to trtdet are captured here. Imports are lazy: trtdet imports
without either installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from trtdet.contracts.build_steps import RuntimeInfo, version_tuple
from trtdet.errors import UsageError

#: ``--trt`` names and the module each imports.
MODULES: dict[str, str] = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx_bindings"}
#: ``--trt auto`` tries these in order: the full TensorRT runs on more GPUs (H100 included).
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "rtx")
INSTALL_HINT = "pip install 'trtdet[tensorrt]' (NVIDIA TensorRT) or 'trtdet[rtx]' (TensorRT-RTX)"


@dataclass(frozen=True)
class Flavour:
    """An importable TensorRT: its ``--trt`` name, module and version."""

    name: str
    module: ModuleType

    @property
    def version(self) -> str:
        return str(self.module.__version__)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)

    @property
    def is_rtx(self) -> bool:
        return self.name == "rtx"

    @property
    def always_strongly_typed(self) -> bool:
        """TensorRT-RTX and TensorRT >= 11 have no precision builder flags: types come from the ONNX."""
        return self.is_rtx or self.version_tuple >= (11,)

    @property
    def supports_python_plugins(self) -> bool:
        """TensorRT-RTX's parser aborts the process when it creates a Python-defined plugin."""
        return not self.is_rtx and self.version_tuple >= (10,)

    @property
    def label(self) -> str:
        return f"TensorRT-RTX {self.version}" if self.is_rtx else f"TensorRT {self.version}"

    def runtime_info(self) -> RuntimeInfo:
        """What build steps see of this TensorRT (artifact runtime name ``tensorrt``/``rtx``)."""
        return RuntimeInfo(self.name, self.version, self.label, self.supports_python_plugins, self.module)

    def supported_compute_capabilities(self) -> tuple[tuple[int, int], ...] | None:
        """Compute capabilities this flavour's runtime supports (None: any the build targets).

        TensorRT-RTX lists its targets in ``ComputeCapability`` (SM75, SM80, ...); Hopper
        (9.0) and datacenter Blackwell are not among them.
        """
        if not self.is_rtx:
            return None
        found = []
        for member in self.module.ComputeCapability.__members__:
            if member.startswith("SM") and member[2:].isdigit():
                digits = member[2:]
                found.append((int(digits[:-1]), int(digits[-1])))
        return tuple(found)


def _import(name: str) -> Flavour | None:
    try:
        module = importlib.import_module(MODULES[name])
    except (ImportError, OSError):  # OSError: the package is there but its shared libraries are not
        return None
    if not hasattr(module, "Builder"):  # e.g. the 'tensorrt' meta-package without its libraries
        return None
    return Flavour(name, module)


@cache
def _cached_import(name: str) -> Flavour | None:
    return _import(name)


def available_flavours() -> list[Flavour]:
    """The installed TensorRT flavours, preferred first."""
    return [flavour for name in AUTO_ORDER if (flavour := _cached_import(name)) is not None]


def load_flavour(choice: str | None = None) -> Flavour:
    """The TensorRT named by ``choice`` (``tensorrt``, ``rtx``; None/``auto``: the first installed)."""
    if choice in (None, "auto"):
        found = available_flavours()
        if not found:
            raise UsageError(f"no TensorRT is installed: {INSTALL_HINT}")
        return found[0]
    if choice not in MODULES:
        raise UsageError(f"unknown TensorRT flavour {choice!r} (choose from: auto, {', '.join(MODULES)})")
    flavour = _cached_import(choice)
    if flavour is None:
        raise UsageError(f"--trt {choice}: the module {MODULES[choice]!r} cannot be imported: {INSTALL_HINT}")
    return flavour


def flavour_by_name(name: str) -> Flavour | None:
    """The installed flavour called ``name``, or None."""
    return _cached_import(name) if name in MODULES else None
