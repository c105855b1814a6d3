"""The preprocessor contract shared by the CPU and CUDA implementations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from trtdet.geometry import LETTERBOX_ALIASES, LETTERBOXES, AffineTransform

if TYPE_CHECKING:
    from trtdet.model import ModelSpec


@dataclass(frozen=True)
class LetterboxSettings:
    """What the letterbox preprocessors (CPU and CUDA) are made with, checked once for both.

    Pixels become ``(x / 255 - mean) / std`` per channel in ``channel_order`` (images come in
    BGR), computed as ``x * scale + shift`` with float32 constants (``scale``/``shift``), so the
    CPU reference and the GPU kernel use the very same numbers.
    """

    input_size: tuple[int, int]
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channel_order: Literal["BGR", "RGB"] = "RGB"
    border_value: int = 114
    #: The geometry, by its canonical name (``ultralytics`` becomes ``square``).
    letterbox: str = "warp"
    #: Rect mode pads each side only up to a multiple of this (the model's largest stride).
    stride: int = 32

    def __post_init__(self) -> None:
        if self.letterbox not in LETTERBOXES:
            raise ValueError(f"letterbox: expected one of {', '.join(LETTERBOXES)}, got {self.letterbox!r}")
        object.__setattr__(self, "letterbox", LETTERBOX_ALIASES.get(self.letterbox, self.letterbox))
        object.__setattr__(self, "stride", int(self.stride))
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order: expected 'BGR' or 'RGB', got {self.channel_order!r}")
        object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "border_value", int(self.border_value))

    @classmethod
    def of_spec(cls, spec: ModelSpec) -> LetterboxSettings:
        """The settings a model's spec asks for."""
        return cls(spec.input_size, spec.mean, spec.std, spec.channel_order, spec.border_value, spec.letterbox,
                   spec.stride or 32)

    @property
    def scale(self) -> np.ndarray:
        """``1 / (255 std)`` per channel, float32 (shape ``(3,)``)."""
        return (1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))).astype(np.float32)

    @property
    def shift(self) -> np.ndarray:
        """``-mean / std`` per channel, float32 (shape ``(3,)``)."""
        return (-np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)).astype(np.float32)


@dataclass
class PreprocessedBatch:
    """A network-ready batch and, per image, the transform decode must invert.

    ``tensor`` is ``[B, 3, H, W]``: a float32 numpy array on the CPU path, a torch CUDA
    tensor (float32 or float16) on the GPU path.
    """

    tensor: Any
    transforms: list[AffineTransform]


class Preprocessor(Protocol):
    """Maps HWC uint8 BGR images of any sizes to one network input batch."""

    def __call__(self, images: Sequence[np.ndarray]) -> PreprocessedBatch: ...


@runtime_checkable
class StagingPreprocessor(Preprocessor, Protocol):
    """A GPU preprocessor that can work one batch ahead (optional; the CUDA one does).

    ``warp(stage(images))`` equals ``preprocessor(images)``. ``stage`` does the host work and
    starts the upload without waiting for the GPU; ``warp`` queues the kernels on the current
    stream. The detector stages batch k+1 while the GPU runs batch k, so at most two batches
    are staged and not yet warped. ``discard_staged`` forgets staged batches after an error.
    """

    def stage(self, images: Sequence[Any]) -> Any: ...

    def warp(self, staged: Any) -> PreprocessedBatch: ...

    def discard_staged(self) -> None: ...


@runtime_checkable
class LetterboxPreprocessor(Preprocessor, Protocol):
    """A preprocessor applying one of the core's letterbox geometries (optional; the core's CPU and CUDA ones do).

    ``letterbox`` is the geometry's canonical name (``trtdet.geometry.LETTERBOXES``). Under
    ``"rect"`` an image's network input depends on the shapes batched with it, so the detector
    batches only images of one shape. A preprocessor without this member maps each image on its
    own, and any mix of images may share a batch.
    """

    letterbox: str


def letterbox_of(preprocessor: Preprocessor) -> str | None:
    """The letterbox geometry ``preprocessor`` applies (``LetterboxPreprocessor``); None for any other mapping."""
    return preprocessor.letterbox if isinstance(preprocessor, LetterboxPreprocessor) else None
