"""What a whole-pipeline CUDA graph is specific to (``GraphKey``), and which batches get one (``graph_key``).

Host-side only: no CUDA is touched here, so the CPU tests check it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GraphKey:
    """What a captured pipeline is specific to: each image's (H, W), the input dtype, and whether
    the upload is in the graph (False when some images are uploaded from the caller's pinned memory)."""

    shapes: tuple[tuple[int, int], ...]
    dtype: str
    uploads: bool

    @property
    def batch(self) -> int:
        return len(self.shapes)

    @property
    def image_bytes(self) -> int:
        return sum(h * w * 3 for h, w in self.shapes)


def graph_key(images: Sequence[Any], dtype: str, max_batch: int, pinned: Callable[[np.ndarray], bool]) -> GraphKey | None:
    """The key of a batch, or None when it takes the ordinary path: empty, over ``max_batch``, or
    holding anything but C-contiguous HxWx3 uint8 numpy images (CUDA tensors, odd inputs: the
    ordinary path copies those, or raises its one-line error)."""
    if not 1 <= len(images) <= max_batch:
        return None
    shapes = []
    uploads = True
    for image in images:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            return None
        if 0 in image.shape or not image.flags.c_contiguous:
            return None
        shapes.append((int(image.shape[0]), int(image.shape[1])))
        if pinned(image):
            uploads = False
    return GraphKey(tuple(shapes), dtype, uploads)
