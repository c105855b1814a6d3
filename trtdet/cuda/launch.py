"""Kernel launches through one pre-compiled overload, with argument marshalling cached per tensor.

``Launcher`` compiles a kernel for one signature up front (the warm-up: nothing compiles on
the first batch), then launches that overload directly. numba's ``_prepare_args`` rebuilds a
dozen ctypes objects per array argument on every launch; here each torch tensor's
arguments (numba's array ABI: ``meminfo, parent, nitems, itemsize, data, shape...,
strides...``) are built once and cached by (pointer, shape, strides).

Measured on the H100 with numba-cuda 0.30.4 this saves little: that version launches
through ``cuda.core``, and the launch call itself costs ~50-90 µs of Python per kernel
whatever the arguments (see benchmarks/results/kernels_h100.md). Scalars, the simulator and
``TRTDET_FAST_LAUNCH=0`` take numba's normal path; if a numba version rejects the cached
arguments (a TypeError before anything is enqueued) the launcher falls back to it for good.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numba import cuda

from trtdet.cuda.runtime import SIMULATOR, device_view

FAST = not SIMULATOR and os.environ.get("TRTDET_FAST_LAUNCH", "1") != "0"


class Reinterpret:
    """A torch tensor that a kernel reads as another dtype of the same size (e.g. int64 as uint64)."""

    __slots__ = ("dtype", "tensor")

    def __init__(self, tensor: Any, dtype: Any) -> None:
        self.tensor = tensor
        self.dtype = np.dtype(dtype)


class _PreparedArray:
    """The ctypes arguments numba passes for one device array, built once."""

    __slots__ = ("cargs",)

    def __init__(self, tensor: Any) -> None:
        c_intp = ctypes.c_int64
        pointer = ctypes.c_uint64  # numba-cuda >= 0.30 launches through cuda.core, which takes no c_void_p
        itemsize = tensor.element_size()
        self.cargs = [
            pointer(0),  # meminfo
            pointer(0),  # parent
            c_intp(tensor.numel()),
            c_intp(itemsize),
            pointer(tensor.data_ptr()),
            *[c_intp(int(s)) for s in tensor.shape],
            *[c_intp(int(s) * itemsize) for s in tensor.stride()],
        ]


_prepared: OrderedDict[tuple, _PreparedArray] = OrderedDict()


def _prepare(tensor: Any) -> _PreparedArray:
    key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.element_size())
    found = _prepared.get(key)
    if found is None:
        found = _PreparedArray(tensor)
        _prepared[key] = found
        if len(_prepared) > 256:
            _prepared.popitem(last=False)
    return found


def _install_fast_prepare(kernel: Any) -> None:
    """Let ``kernel.launch`` take ``_PreparedArray`` arguments as they are."""
    if getattr(kernel, "_trtdet_fast", False):
        return
    original = kernel._prepare_args

    def prepare_args(ty, val, stream, retr, kernelargs):  # type: ignore[no-untyped-def]
        if val.__class__ is _PreparedArray:
            kernelargs.extend(val.cargs)
            return None
        return original(ty, val, stream, retr, kernelargs)

    kernel._prepare_args = prepare_args
    kernel._trtdet_fast = True


def _dim3(dim: Any) -> tuple[int, int, int]:
    if isinstance(dim, int):
        return (dim, 1, 1)
    dim = tuple(int(d) for d in dim)
    return dim + (1,) * (3 - len(dim))


class Launcher:
    """One kernel compiled for one signature; ``launcher(grid, block, stream, *args)`` enqueues it.

    ``args`` may be torch tensors (CUDA; CPU under the simulator), ``Reinterpret`` wrappers,
    numba/numpy arrays and scalars. ``stream`` is a numba stream (``numba_stream(...)``).
    """

    def __init__(self, dispatcher: Any, signature: tuple) -> None:
        self.dispatcher = dispatcher
        self.kernel = None
        if SIMULATOR:
            return
        kernel = dispatcher.compile(signature)  # the warm-up: compiled before first use
        if FAST:
            try:
                _install_fast_prepare(kernel)
                self.kernel = kernel
            except AttributeError:  # a numba-cuda without the expected internals: normal path
                self.kernel = None

    def __call__(self, grid: Any, block: Any, stream: Any, *args: Any) -> None:
        if self.kernel is not None:
            try:
                self.kernel.launch(tuple(self._fast(a) for a in args), _dim3(grid), _dim3(block), stream, 0)
                return
            except TypeError as exc:  # arguments rejected before anything was enqueued: normal path from now on
                warnings.warn(f"trtdet: fast kernel launch unavailable ({exc}); using numba's launcher", stacklevel=2)
                self.kernel = None
        self.dispatcher[grid, block, stream](*(self._slow(a) for a in args))

    @staticmethod
    def _fast(arg: Any) -> Any:
        if hasattr(arg, "data_ptr"):
            return _prepare(arg)
        if arg.__class__ is Reinterpret:
            return _prepare(arg.tensor)
        return arg

    @staticmethod
    def _slow(arg: Any) -> Any:
        if hasattr(arg, "data_ptr"):
            return device_view(arg)
        if arg.__class__ is Reinterpret:
            return device_view(arg.tensor).view(arg.dtype)
        return arg


class KernelSet:
    """A module's numba kernels, registered once: their Python sources (``cuda.compile_ptx`` checks
    read them), their argument types, and one ``Launcher`` per (kernel, signature), compiled on first
    use and shared by every caller after.

    ``signatures()`` returns, per kernel name, its signatures (e.g. one per output dtype).
    """

    def __init__(self, sources: Mapping[str, Callable[..., None]], signatures: Callable[[], dict[str, list[tuple]]]) -> None:
        self.sources = dict(sources)
        self.signatures = signatures
        self._kernels = {name: cuda.jit(source) for name, source in self.sources.items()}
        self._launchers: dict[tuple[str, int], Launcher] = {}
        self._lock = threading.Lock()

    def launcher(self, name: str, signature: int = 0) -> Launcher:
        """The launcher of kernel ``name`` for its ``signature``-th signature."""
        key = (name, signature)
        found = self._launchers.get(key)
        if found is None:
            with self._lock:
                found = self._launchers.get(key)
                if found is None:
                    found = Launcher(self._kernels[name], self.signatures()[name][signature])
                    self._launchers[key] = found
        return found
