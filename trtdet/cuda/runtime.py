"""numba.cuda plumbing shared by the trtdet kernels: streams, array views, exact-rounding helpers.

GPU memory and streams come from torch. A kernel sees a torch CUDA tensor through
``cuda.as_cuda_array`` (no copy, no synchronisation: torch exports ``__cuda_array_interface__``
version 2 without a stream) and launches on ``cuda.external_stream(torch_stream.cuda_stream)``,
so kernels, torch ops and TensorRT all run in order on the caller's one stream.

Under ``NUMBA_ENABLE_CUDASIM=1`` (the CPU simulator used in CI) the same wrappers accept CPU
torch tensors and numpy arrays, and ``stream`` arguments are ignored: the simulator runs
each launch to completion on the calling thread.

The ``*_rn`` helpers pin the rounding of an operation: NVVM contracts ``a * b + c`` into one
FMA when it can, which changes results in the last bit; the CPU references (numpy, OpenCV)
round every product, so kernels that must match them bit for bit use these.
"""

from __future__ import annotations

import ctypes
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import config, cuda

from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

#: True when numba.cuda is the CPU simulator (``NUMBA_ENABLE_CUDASIM=1`` before numba was imported).
SIMULATOR: bool = bool(config.ENABLE_CUDASIM)

# The per-image kernels (top-K, NMS) launch one block per image by design; numba would warn
# about "low occupancy" on every such launch, and the check itself costs launch time.
config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

if SIMULATOR:
    def fmul_rn(a, b):  # type: ignore[no-untyped-def]
        return np.float32(np.float32(a) * np.float32(b))

    def fadd_rn(a, b):  # type: ignore[no-untyped-def]
        return np.float32(np.float32(a) + np.float32(b))

    def dmul_rn(a, b):  # type: ignore[no-untyped-def]
        return float(a) * float(b)

    def dadd_rn(a, b):  # type: ignore[no-untyped-def]
        return float(a) + float(b)

    def fma_f32(a, b, c):  # type: ignore[no-untyped-def]
        # The product of two float32 is exact in float64; one more rounding to float32 follows.
        return np.float32(float(a) * float(b) + float(c))

    def rint_f32(a):  # type: ignore[no-untyped-def]
        return np.float32(np.rint(np.float32(a)))

else:
    from numba.cuda import libdevice

    fmul_rn = libdevice.fmul_rn
    fadd_rn = libdevice.fadd_rn
    dmul_rn = libdevice.dmul_rn
    dadd_rn = libdevice.dadd_rn
    fma_f32 = libdevice.fmaf
    rint_f32 = libdevice.rintf


def cuda_available() -> str | None:
    """None when kernels can run here (a GPU, or the simulator), else a one-line reason."""
    if SIMULATOR:
        return None
    try:
        if not cuda.is_available():
            return "numba.cuda finds no usable CUDA GPU/driver"
    except Exception as exc:  # driver errors surface here
        return f"numba.cuda is unusable: {exc}"
    try:
        import torch
    except ImportError:
        return "torch is not installed (GPU memory and streams come from torch)"
    if not torch.cuda.is_available():
        return "torch.cuda finds no GPU"
    return None


def torch_device() -> Any:
    """The torch device kernels read and write: ``cuda`` (``cpu`` under the simulator)."""
    return torch.device("cpu") if SIMULATOR else torch.device("cuda", torch.cuda.current_device())


def torch_stream(stream: Any = None) -> Any:
    """The torch stream to run on: ``stream`` if given (torch stream or raw handle), else torch's current one."""
    if SIMULATOR:
        return None

    if stream is None:
        return torch.cuda.current_stream()
    if isinstance(stream, int):
        return torch.cuda.ExternalStream(stream)
    return stream


_numba_streams: dict[int, Any] = {}


def numba_stream(stream: Any = None) -> Any:
    """A numba stream for a torch stream, a raw ``cudaStream_t`` handle (int) or None (torch's current).

    Handle 0 is the legacy default stream. Cached per handle: creating one costs a few µs.
    """
    if SIMULATOR:
        return 0
    if isinstance(stream, int):
        handle = stream
    elif hasattr(stream, "cuda_stream"):
        handle = int(stream.cuda_stream)
    elif stream is None:
        handle = int(torch.cuda.current_stream().cuda_stream)
    else:  # already a numba stream
        return stream
    found = _numba_streams.get(handle)
    if found is None:
        found = cuda.default_stream() if handle == 0 else cuda.external_stream(handle)
        _numba_streams[handle] = found
    return found


class _ViewCache:
    """Numba device-array views of torch tensors, keyed by (pointer, shape, strides, dtype).

    Building a view costs ~10 µs of Python; pipelines reuse the same buffers every batch, so
    a small LRU makes the steady state cheap. A view holds no reference to the tensor; the
    caller keeps the tensor alive for the launch, as it must anyway.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._views: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, make: Any) -> Any:
        view = self._views.get(key)
        if view is None:
            view = make()
            self._views[key] = view
            if len(self._views) > self.size:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(key)
        return view


_views = _ViewCache()


def device_view(array: Any) -> Any:
    """A numba device array over a torch tensor / numba array / (simulator) numpy array, no copy."""
    if SIMULATOR:
        if hasattr(array, "detach"):
            if array.is_cuda:
                raise ValueError("the CUDA simulator needs CPU tensors")
            return array.detach().numpy()
        return array
    if hasattr(array, "data_ptr"):  # a torch tensor
        if not array.is_cuda:
            raise ValueError(f"expected a CUDA tensor, got one on {array.device}")
        key = (array.data_ptr(), tuple(array.shape), tuple(array.stride()), str(array.dtype))
        return _views.get(key, lambda: cuda.as_cuda_array(array.detach(), sync=False))
    if hasattr(array, "copy_to_host"):  # already a numba device array
        return array
    if cuda.is_cuda_array(array):
        return cuda.as_cuda_array(array, sync=False)
    raise TypeError(f"expected a CUDA tensor or device array, got {type(array).__name__}")


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(int(dim), 1)
    return tuple(reversed(strides))


def pointer_view(pointer: int, shape: tuple[int, ...], dtype: Any) -> Any:
    """A C-contiguous numba device array over raw device memory at ``pointer`` (no ownership).

    Under the simulator ``pointer`` is a host address (e.g. a CPU tensor's ``data_ptr()``).
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if SIMULATOR:
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, dtype)
        buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(int(pointer))
        return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)
    key = (int(pointer), shape, None, dtype.str)

    def make() -> Any:
        interface = {
            "shape": shape,
            "strides": None,
            "typestr": dtype.str,
            "data": (int(pointer), False),
            "version": 3,
            "stream": None,  # no synchronisation: the caller orders work on its stream
        }
        return cuda.from_cuda_array_interface(interface, owner=None, sync=False)

    return _views.get(key, make)


class PointerArray:
    """Raw device memory as an object with ``__cuda_array_interface__`` (for ``torch.as_tensor``)."""

    def __init__(self, pointer: int, shape: tuple[int, ...], dtype: Any) -> None:
        dtype = np.dtype(dtype)
        self.__cuda_array_interface__ = {
            "shape": tuple(int(s) for s in shape),
            "strides": None,
            "typestr": dtype.str,
            "data": (int(pointer), False),
            "version": 3,
            "stream": None,
        }


def torch_from_pointer(pointer: int, shape: tuple[int, ...], dtype: Any) -> Any:
    """A torch tensor over raw device memory (simulator: host memory), no copy, no ownership."""
    if SIMULATOR:
        return torch.from_numpy(pointer_view(pointer, shape, dtype))
    return torch.as_tensor(PointerArray(pointer, shape, dtype), device="cuda")


def blocks(n: int, threads: int) -> int:
    """How many blocks of ``threads`` cover ``n`` items (at least one)."""
    return max(1, (int(n) + threads - 1) // threads)
