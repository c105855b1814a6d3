"""Pinned frames: shapes, independence, and the fallback without a GPU (the upload shortcut is GPU-tested
in tests/trtdet/cuda/test_gpu_kernels.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trtdet.io.pinned import is_pinned, pinned_frames


def test_frames_are_separate_writable_uint8_images():
    frames = pinned_frames(3, 4, 5)
    assert [f.shape for f in frames] == [(4, 5, 3)] * 3 and all(f.dtype == np.uint8 for f in frames)
    for k, frame in enumerate(frames):
        frame[...] = k
    assert [int(f.max()) for f in frames] == [0, 1, 2]


def test_ordinary_arrays_are_not_pinned():
    image = np.zeros((4, 5, 3), np.uint8)
    assert not is_pinned(image)
    image.flags.writeable = False
    assert not is_pinned(image)


def test_bad_sizes_are_refused_in_one_line():
    with pytest.raises(ValueError, match="expected positive sizes"):
        pinned_frames(1, 0, 5)
