"""Frames in page-locked (pinned) host memory, which the GPU preprocessor uploads without a copy.

A 1080p frame in ordinary (pageable) memory must first be copied into pinned staging before
DMA can move it, and that memcpy takes several times as long as the upload itself
(``benchmarks/transfer_probe.py``; measured tables in ``benchmarks/results/``). Decode straight into a pinned frame (``cv2.VideoCapture.read``
and ``cv2.imdecode`` accept an output array) and the preprocessor skips the copy. A pinned
frame is read by an asynchronous upload: do not write into it again before its detections are back.
"""

from __future__ import annotations

import numpy as np


def pinned_frames(count: int, height: int, width: int, channels: int = 3) -> list[np.ndarray]:
    """``count`` uint8 arrays ``[height, width, channels]`` in one pinned allocation.

    Without a CUDA device (or torch) they are ordinary arrays: the same code runs, only the
    upload's shortcut is missing.
    """
    if count < 0 or height <= 0 or width <= 0 or channels <= 0:
        raise ValueError(f"pinned_frames: expected positive sizes, got {count} x {height} x {width} x {channels}")
    shape = (count, height, width, channels)
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
        block = torch.empty(shape, dtype=torch.uint8, pin_memory=True).numpy()
    except (ImportError, RuntimeError):
        block = np.empty(shape, dtype=np.uint8)
    return list(block)


def is_pinned(array: np.ndarray) -> bool:
    """Whether ``array`` lies in page-locked memory CUDA knows (a few microseconds per call)."""
    try:
        import torch

        if array.flags.writeable:
            return bool(torch.from_numpy(array).is_pinned())
        import warnings

        with warnings.catch_warnings():  # torch warns that it cannot protect a read-only array
            warnings.simplefilter("ignore", UserWarning)
            return bool(torch.from_numpy(array).is_pinned())
    except (ImportError, RuntimeError, TypeError, ValueError):
        return False
