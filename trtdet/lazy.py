"""Heavy optional modules (torch, onnxruntime, ...) imported where first used, named once at the top of a file.

``torch = lazy_import("torch")`` at module level stands for torch without importing it: the
first attribute read (``torch.cuda``) imports it, later reads go straight to it. A file that
uses torch in a few functions then imports nothing inside them, and ``import trtdet`` stays
fast where torch is not needed. Write it under ``TYPE_CHECKING`` so checkers see the real module::

    if TYPE_CHECKING:
        import torch
    else:
        torch = lazy_import("torch")

A module that is not installed raises its ``ImportError`` at that first read, as an import
inside the function would. Code that asks whether a module is installed keeps its own
``try: import ... except ImportError``.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in for the module ``name``: imported on the first attribute read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_module"] = None
        self.__dict__["_lazy_lock"] = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def _load(self) -> ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            with self.__dict__["_lazy_lock"]:
                module = self.__dict__["_lazy_module"] or importlib.import_module(self.__name__)
                self.__dict__["_lazy_module"] = module
        return module

    def __repr__(self) -> str:
        state = "imported" if self.__dict__["_lazy_module"] is not None else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_import(name: str) -> Any:
    """A stand-in for the module ``name`` (dotted names too) that imports it on first use."""
    return LazyModule(name)
