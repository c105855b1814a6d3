"""numba.cuda support shared by trtdet's GPU kernels (see ``trtdet.cuda.runtime``)."""

from trtdet.cuda.runtime import (
    SIMULATOR,
    blocks,
    cuda_available,
    device_view,
    numba_stream,
    pointer_view,
    torch_device,
    torch_from_pointer,
    torch_stream,
)

__all__ = [
    "SIMULATOR",
    "blocks",
    "cuda_available",
    "device_view",
    "numba_stream",
    "pointer_view",
    "torch_device",
    "torch_from_pointer",
    "torch_stream",
]
