"""``RunContext``: where and how a detector runs, resolved once by ``trtdet.load``.

The device is parsed once into a ``Device`` (never re-parsed from a string downstream), the
precision and batch are the options' own, and ``stream`` is the pipeline's CUDA stream (None on
the CPU, or before the pipeline made it). Every factory of a model object (preprocessor,
decoder) receives this one object, so an fp16 pipeline's preprocessing writes fp16 directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from trtdet.devices import Device, parse_device
from trtdet.errors import UsageError

PRECISIONS: tuple[str, ...] = ("fp32", "fp16")


@dataclass(frozen=True)
class RunContext:
    """The resolved device, precision, largest batch and stream of one detector."""

    device: Device
    precision: str = "fp32"
    batch: int = 1
    #: The pipeline's ``torch.cuda.Stream`` on a GPU; None on the CPU.
    stream: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, Device):
            object.__setattr__(self, "device", parse_device(self.device))
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision: expected 'fp32' or 'fp16', got {self.precision!r}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise UsageError(f"batch: expected >= 1, got {self.batch!r}")

    @classmethod
    def of(cls, device: str | Device = "cpu", precision: str = "fp32", batch: int = 1) -> RunContext:
        """A context from plain values (``device`` as ``"cpu"``, ``"cuda"`` or ``"cuda:N"``)."""
        return cls(device if isinstance(device, Device) else parse_device(device), precision, batch)

    @property
    def kind(self) -> str:
        """``"cpu"`` or ``"cuda"``: the device kind plugins' factories choose by."""
        return self.device.kind

    @property
    def is_cuda(self) -> bool:
        return self.device.is_cuda

    @property
    def half(self) -> bool:
        """Whether the network runs in fp16 on a GPU (so preprocessing writes fp16)."""
        return self.precision == "fp16" and self.device.is_cuda

    def with_stream(self, stream: Any) -> RunContext:
        """The same context on ``stream`` (the pipeline's, once it made one)."""
        return replace(self, stream=stream)
