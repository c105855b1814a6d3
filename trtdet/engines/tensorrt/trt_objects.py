"""Small TensorRT objects shared by the builder and the runtime: logger, progress monitor, dtypes.

They subclass classes of the TensorRT module chosen at run time, so they are created by
factories taking that module (``tensorrt`` or ``tensorrt_rtx_bindings``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

#: How much of a TensorRT error message a one-line error quotes.
LAST_ERROR_CHARS = 400


def make_logger(trt: ModuleType, echo: Callable[[str], None] | None = None) -> Any:
    """A ``trt.ILogger`` that keeps error messages (to explain failures) and echoes warnings."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if echo is not None and int(severity) <= int(trt.ILogger.Severity.WARNING):
                echo(f"[TensorRT] {msg}")

        def last_error(self) -> str:
            """The last error as one line (TensorRT's can span many), cut to ``LAST_ERROR_CHARS``."""
            if not self.errors:
                return "no error reported"
            text = " ".join(self.errors[-1].split())
            return text if len(text) <= LAST_ERROR_CHARS else text[: LAST_ERROR_CHARS - 3] + "..."

    return CollectingLogger()


def make_progress_monitor(trt: ModuleType, report: Callable[[str], None]) -> Any:
    """A ``trt.IProgressMonitor`` reporting each top-level build phase and step counts."""

    class PhaseReporter(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = depth
            if depth <= 1:
                report(f"{'  ' * depth}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            self.depth.pop(phase_name, None)

    return PhaseReporter()


def dtype_name(trt: ModuleType, dtype: Any) -> str:
    """``float32``, ``float16``, ... for a ``trt.DataType``."""
    return np.dtype(trt.nptype(dtype)).name
