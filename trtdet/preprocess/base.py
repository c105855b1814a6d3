"""The preprocessor contract shared by the CPU and CUDA implementations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trtdet.geometry import AffineTransform


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
