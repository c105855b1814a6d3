"""The preprocessor contract shared by the CPU and CUDA implementations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trtdet.preprocess.affine import AffineTransform


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
