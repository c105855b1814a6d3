"""``RunContext``: where and how a detector runs or an engine is built, resolved once.

The device is parsed once into a ``Device`` (never re-parsed from a string downstream), the
precision and batch are the options' own, and ``stream`` is the pipeline's CUDA stream (None on
the CPU, or before the pipeline made it). Every factory of a model object (preprocessor,
decoder) receives this one object, so an fp16 pipeline's preprocessing writes fp16 directly.
``options`` is the one ``DetectorOptions`` it was resolved from, for what a backend reads beyond
those (build options, CUDA graphs): ``trtdet.load`` hands it to ``EngineBackend.load`` and
``trtdet build`` to ``EngineBackend.build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from trtdet.devices import Device, as_device
from trtdet.errors import UsageError
from trtdet.options import PRECISIONS, DetectorOptions

__all__ = ["PRECISIONS", "RunContext"]


@dataclass(frozen=True)
class RunContext:
    """The resolved device, precision, largest batch and stream of one detector (or build), and its options."""

    device: Device
    precision: str = "fp32"
    batch: int = 1
    #: The pipeline's ``torch.cuda.Stream`` on a GPU; None on the CPU.
    stream: Any = None
    #: The options this context was resolved from, their ``device``, ``precision`` and ``batch``
    #: always the context's own (None given: the defaults with those three).
    options: DetectorOptions = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.device, Device):
            object.__setattr__(self, "device", as_device(self.device))
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision: expected 'fp32' or 'fp16', got {self.precision!r}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise UsageError(f"batch: expected >= 1, got {self.batch!r}")
        own = {"device": str(self.device), "precision": self.precision, "batch": self.batch}
        options = self.options
        if options is None:
            options = DetectorOptions(**own)
        elif any(getattr(options, name) != value for name, value in own.items()):
            options = options.replace(**own)
        object.__setattr__(self, "options", options)

    @classmethod
    def of(cls, device: str | Device = "cpu", precision: str = "fp32", batch: int = 1) -> RunContext:
        """A context from plain values (``device`` as ``"cpu"``, ``"cuda"`` or ``"cuda:N"``)."""
        return cls(as_device(device), precision, batch)

    @classmethod
    def from_options(cls, options: DetectorOptions, context: RunContext | None = None) -> RunContext:
        """The context of ``options``: their device parsed, precision and batch; with ``context``
        (one already resolved, e.g. with its stream) that context carrying ``options``."""
        if context is not None:
            return context if context.options is options else replace(context, options=options)
        return cls(as_device(options.device), options.precision, options.batch, options=options)

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

    @property
    def build_options(self) -> dict[str, str]:
        """The plugins' build-step choices (``--build-option NAME=VALUE``) an engine build uses."""
        return dict(self.options.build_options)

    def with_stream(self, stream: Any) -> RunContext:
        """The same context on ``stream`` (the pipeline's, once it made one)."""
        return replace(self, stream=stream)

    def replace(self, **changes: Any) -> RunContext:
        """A copy with ``changes`` (checked again; the options follow the device, precision and batch)."""
        return replace(self, **changes)
