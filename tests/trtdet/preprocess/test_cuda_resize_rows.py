"""The rows the resize letterbox never needs: outside ``resize_row_band`` a source row can hold
anything and cv2.resize (INTER_LINEAR, the kernel's reference) gives the same output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtdet.preprocess.cuda_resize import resize_row_band
from trtdet.preprocess.letterbox import batch_transforms

FRAMES = [(1080, 1920), (2160, 3840), (1440, 2560), (720, 1280), (480, 640), (1000, 1500), (1920, 1080), (1081, 1920)]


@pytest.mark.parametrize("letterbox", ["square", "rect", "stretch"])
@pytest.mark.parametrize("shape", FRAMES, ids=[f"{h}x{w}" for h, w in FRAMES])
def test_rows_outside_the_band_do_not_change_cv2_resize(shape, letterbox):
    h, w = shape
    transform = batch_transforms(letterbox, [(h, w, 3)], (640, 640), stride=32)[0]
    new_h, new_w = transform.resized
    band = resize_row_band(h, new_h)
    rng = np.random.default_rng(h + w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if band is None:
        return  # every row is read: nothing to leave out
    period, lo, hi = band
    unread = (np.arange(h) % period < lo) | (np.arange(h) % period >= hi)
    assert unread.mean() >= 0.25
    garbled = image.copy()
    garbled[unread] = rng.integers(0, 256, garbled[unread].shape, dtype=np.uint8)
    want = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(cv2.resize(garbled, (new_w, new_h), interpolation=cv2.INTER_LINEAR), want)


def test_a_1080p_frame_resized_to_640_needs_a_third_of_its_rows():
    assert resize_row_band(1080, 360) == (3, 1, 2)
    assert resize_row_band(720, 360) is None  # every row carries weight
