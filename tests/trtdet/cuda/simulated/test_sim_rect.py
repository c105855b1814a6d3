"""The resize-and-pad kernel in Ultralytics' rect and stretch geometries, under the simulator.

References: ``cv2.resize`` + ``cv2.copyMakeBorder`` with pads from Ultralytics' own formula
(``checks.resize_and_pad`` for the square case, computed here for rect and stretch), and the
CPU preprocessor (the same OpenCV calls), bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

from ..checks import random_images

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

YOLO = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="RGB", border_value=114)


def rect_by_hand(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """LetterBox(auto=True) written out: resize the long side to ``size``, pad to a multiple of ``stride``."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size - new_w) % stride / 2, (size - new_h) % stride / 2
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_h, new_w) != (h, w) else image
    return cv2.copyMakeBorder(resized, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1),
                              cv2.BORDER_CONSTANT, value=(114, 114, 114))


def as_network_input(bgr: np.ndarray) -> np.ndarray:
    return bgr[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


@pytest.mark.parametrize("shape", [(27, 48), (48, 27), (9, 40), (40, 40), (1, 30), (33, 31)])
def test_rect_batches_of_one_shape_are_stride_padded(shape):
    images = random_images(np.random.default_rng(shape[0]), [shape, shape, shape])
    got = CudaWarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, **YOLO)(images)
    want = np.stack([as_network_input(rect_by_hand(image, 32, 8)) for image in images])
    assert got.tensor.shape == want.shape and want.shape[2] % 8 == 0 and want.shape[3] % 8 == 0
    np.testing.assert_allclose(got.tensor.numpy(), want, rtol=0, atol=1e-7)
    cpu = WarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, **YOLO)(images)
    np.testing.assert_array_equal(got.tensor.numpy(), cpu.tensor)
    assert [t.dst_size for t in got.transforms] == [tuple(want.shape[2:])] * 3


def test_rect_batches_of_mixed_shapes_are_square():
    """Ultralytics' same_shapes rule: images of different shapes in one call get the full input."""
    images = random_images(np.random.default_rng(7), [(27, 48), (48, 27)])
    got = CudaWarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, **YOLO)(images)
    square = CudaWarpAffinePreprocessor((32, 32), letterbox="square", **YOLO)(images)
    assert got.tensor.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(got.tensor.numpy(), square.tensor.numpy())


def test_rect_then_square_batches_on_one_preprocessor():
    """Consecutive batches of different input sizes each get their own output size."""
    pre = CudaWarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, **YOLO)
    wide = random_images(np.random.default_rng(1), [(18, 32)])
    assert pre(wide).tensor.shape == (1, 3, 24, 32)
    assert pre(wide + random_images(np.random.default_rng(2), [(5, 5)])).tensor.shape == (2, 3, 32, 32)
    assert pre(wide).tensor.shape == (1, 3, 24, 32)


@pytest.mark.parametrize("shape", [(27, 48), (48, 27), (1, 30), (40, 40), (7, 5)])
def test_stretch_is_a_plain_resize(shape):
    images = random_images(np.random.default_rng(shape[1]), [shape])
    got = CudaWarpAffinePreprocessor((24, 20), letterbox="stretch", **YOLO)(images)
    want = as_network_input(cv2.resize(images[0], (20, 24), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(got.tensor.numpy()[0], want, rtol=0, atol=1e-7)
    cpu = WarpAffinePreprocessor((24, 20), letterbox="stretch", **YOLO)(images)
    np.testing.assert_array_equal(got.tensor.numpy(), cpu.tensor)


def test_rect_float16():
    images = random_images(np.random.default_rng(9), [(20, 36)] * 2)
    got = CudaWarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, dtype=torch.float16, **YOLO)(images).tensor
    want = WarpAffinePreprocessor((32, 32), letterbox="rect", stride=8, **YOLO)(images).tensor.astype(np.float16)
    np.testing.assert_array_equal(got.numpy(), want)
