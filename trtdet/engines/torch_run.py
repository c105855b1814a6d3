"""One call of a torch network (eager module, AOTInductor package, CUDA graph) as an engine runs it.

Shared by the torch and inductor backends: the batch is moved to the device in the network's
dtype and layout, fp32 runs with TF32 off in cuDNN and cuBLAS (either would otherwise round
inputs to a 10-bit mantissa), and outputs come back named: numpy float32 on the CPU, torch tensors in the network's
precision on CUDA (the decoders read fp16 directly, as they do a TensorRT engine's outputs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def run_network(
    network: Callable[[Any], Any],
    batch: Any,
    layout: tuple[Any, Any, Any],
    output_names: Sequence[str],
    grad_mode: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """``network(batch)`` with ``layout = (device, dtype, memory_format)``; ``{name: output}``."""
    device, dtype, memory_format = layout
    mode = grad_mode() if grad_mode is not None else torch.inference_mode()
    exact = dtype == torch.float32 and str(device).startswith("cuda")
    with mode, _without_tf32() if exact else contextlib.nullcontext():
        tensor = torch.as_tensor(batch).to(device, dtype, non_blocking=True)
        outputs = network(tensor.contiguous(memory_format=memory_format))
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    if str(device) == "cpu":
        return {n: o.float().numpy() for n, o in zip(output_names, outputs, strict=True)}
    return dict(zip(output_names, outputs, strict=True))


@contextlib.contextmanager
def _without_tf32() -> Any:
    """cuDNN and cuBLAS in full float32 for the call (TF32 rounds inputs to a 10-bit mantissa).

    Both switches are process-wide; they are put back as they were, so a caller that trains
    with TF32 (``torch.backends.cuda.matmul.allow_tf32 = True``) keeps it outside the call.
    """
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = before
