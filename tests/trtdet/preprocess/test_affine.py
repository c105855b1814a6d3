"""The letterbox transform against hand-computed matrices and cv2.resize as ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtdet.preprocess.affine import letterbox_transform
from trtdet.preprocess.cpu import WarpAffinePreprocessor


def test_matrix_for_a_wide_image_is_hand_computed():
    # 1280x640 (W x H) into 640x640: scale 0.5, content 640x320 centred with 160 rows of padding.
    t = letterbox_transform((640, 1280), (640, 640))
    # pixel centres: x_dst = 0.5 x_src + (0.25 - 0.5); y_dst = 0.5 y_src + 160 - 0.25
    np.testing.assert_allclose(t.matrix, [[0.5, 0, -0.25], [0, 0.5, 159.75]])
    # box (edge) coordinates: x_src = 2 x_dst; y_src = 2 (y_dst - 160)
    np.testing.assert_allclose(t.inverse, [[2, 0, 0], [0, 2, -320]])


def test_boxes_round_trip_through_forward_edges_and_inverse():
    t = letterbox_transform((375, 500), (512, 512))
    s = t.scale
    box = np.array([[10.0, 20.0, 300.0, 370.0]], np.float32)
    pad_x, pad_y = (512 - s * 500) / 2, (512 - s * 375) / 2
    forward = box * s + np.array([pad_x, pad_y, pad_x, pad_y], np.float32)
    np.testing.assert_allclose(t.boxes_to_source(forward), box, atol=1e-3)


def test_boxes_are_clipped_to_the_image():
    t = letterbox_transform((100, 200), (64, 64))
    boxes = t.boxes_to_source(np.array([[-5.0, -5.0, 70.0, 70.0]], np.float32))
    np.testing.assert_allclose(boxes, [[0, 0, 200, 100]])


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_image_size_is_refused(shape):
    with pytest.raises(ValueError, match="positive"):
        letterbox_transform(shape, (64, 64))


def test_warp_matches_cv2_resize_plus_border():
    """A 2x downscale samples the same points as cv2.resize; the padding is the border value."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (320, 640, 3), dtype=np.uint8), (5, 5), 0)
    pre = WarpAffinePreprocessor((320, 320), border_value=114, channel_order="BGR")
    warped, _ = pre.warp(image)
    reference = cv2.resize(image, (320, 160), interpolation=cv2.INTER_LINEAR)
    assert np.all(warped[:80] == 114) and np.all(warped[240:] == 114)
    diff = np.abs(warped[80:240].astype(int) - reference.astype(int))
    assert diff.max() <= 1


def test_normalisation_channel_order_and_layout():
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    rgb = WarpAffinePreprocessor((4, 4), mean=mean, std=std, channel_order="RGB")([image]).tensor
    bgr = WarpAffinePreprocessor((4, 4), mean=mean, std=std, channel_order="BGR")([image]).tensor
    assert rgb.shape == (1, 3, 4, 4) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, :, 0, 0], [(30 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (10 / 255 - 0.3) / 0.125], rtol=1e-6)
    np.testing.assert_allclose(bgr[0, :, 0, 0], [(10 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (30 / 255 - 0.3) / 0.125], rtol=1e-6)


def test_batch_of_mixed_sizes_keeps_each_transform(photos):
    pre = WarpAffinePreprocessor((256, 256))
    images = [cv2.imread(str(photos["grace_hopper"])), cv2.imread(str(photos["astronaut"]))]
    batch = pre(images)
    assert batch.tensor.shape == (2, 3, 256, 256)
    assert [t.src_size for t in batch.transforms] == [images[0].shape[:2], images[1].shape[:2]]
    for i, image in enumerate(images):
        expected = cv2.warpAffine(image, batch.transforms[i].matrix, (256, 256), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(114, 114, 114))
        np.testing.assert_allclose(batch.tensor[i], expected[..., ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
