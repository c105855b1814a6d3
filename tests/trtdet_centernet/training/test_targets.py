"""Target encoding against values computed by hand from upstream CenterNet's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtdet_centernet.training.targets import draw_umich_gaussian, encode_targets, gaussian2d, gaussian_radius

E2, E4 = math.exp(-2), math.exp(-4)  # sigma = diameter / 6 = 0.5 for radius 1


def test_gaussian_radius_square_box_by_hand():
    # h = w = 10, overlap 0.7: case 3 is the smallest, a = 2.8, b = -28, c = -30,
    # upstream root (b + sqrt(b^2 - 4ac)) / 2 = (-28 + sqrt(1120)) / 2.
    assert gaussian_radius((10, 10)) == pytest.approx((-28 + math.sqrt(1120)) / 2)
    assert gaussian_radius((10, 10)) == pytest.approx(2.7332, abs=1e-4)


def test_gaussian_radius_wide_box_by_hand():
    # h = 4, w = 8: a3 = 2.8, b3 = -16.8, c3 = -9.6 -> (-16.8 + sqrt(389.76)) / 2 = 1.4711.
    assert gaussian_radius((4, 8)) == pytest.approx((-16.8 + math.sqrt(389.76)) / 2)
    assert gaussian_radius((4, 8)) == pytest.approx(1.4711, abs=1e-4)


def test_gaussian2d_radius_one():
    g = gaussian2d((3, 3), sigma=0.5)
    expected = np.array([[E4, E2, E4], [E2, 1, E2], [E4, E2, E4]])
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_draw_gaussian_inside_and_max_combines():
    hm = np.zeros((5, 5), np.float32)
    hm[1, 1] = 0.5  # an existing, larger value survives (element-wise max)
    draw_umich_gaussian(hm, (2, 2), 1)
    expected = np.zeros((5, 5), np.float32)
    expected[1:4, 1:4] = [[E4, E2, E4], [E2, 1, E2], [E4, E2, E4]]
    expected[1, 1] = 0.5
    np.testing.assert_allclose(hm, expected, rtol=1e-6)


def test_draw_gaussian_clipped_at_corner():
    hm = np.zeros((4, 4), np.float32)
    draw_umich_gaussian(hm, (0, 0), 1)
    expected = np.zeros((4, 4), np.float32)
    expected[:2, :2] = [[1, E2], [E2, E4]]
    np.testing.assert_allclose(hm, expected, rtol=1e-6)


def test_encode_targets_by_hand():
    # Box edges (9, 13)-(41, 29) in a 64x64 input, stride 4 -> (2.25, 3.25)-(10.25, 7.25):
    # w = 8, h = 4, centre (6.25, 5.25), cell (6, 5), offset (0.25, 0.25), flat index 5*16+6,
    # radius int(1.47) = 1.
    t = encode_targets(np.array([[9, 13, 41, 29]], np.float32), np.array([2]), 3, (64, 64), 4, max_objects=4)
    assert t.hm.shape == (3, 16, 16)
    expected = np.zeros((16, 16), np.float32)
    expected[4:7, 5:8] = [[E4, E2, E4], [E2, 1, E2], [E4, E2, E4]]
    np.testing.assert_allclose(t.hm[2], expected, rtol=1e-6)
    assert not t.hm[:2].any()
    np.testing.assert_allclose(t.wh[0], [8, 4])
    np.testing.assert_allclose(t.reg[0], [0.25, 0.25])
    assert t.ind[0] == 5 * 16 + 6
    np.testing.assert_array_equal(t.mask, [1, 0, 0, 0])


def test_encode_targets_clips_to_the_map_and_skips_empty_boxes():
    boxes = np.array([[-8, -8, 8, 8], [20, 20, 20, 30]], np.float32)  # second has zero width
    t = encode_targets(boxes, np.array([0, 1]), 2, (32, 32), 4, max_objects=3)
    # First box clipped to (0, 0)-(2, 2) at output scale: centre (1, 1), size 2x2.
    np.testing.assert_allclose(t.wh[0], [2, 2])
    assert t.ind[0] == 1 * 8 + 1
    assert t.hm[0, 1, 1] == 1
    np.testing.assert_array_equal(t.mask, [1, 0, 0])
    assert not t.hm[1].any()
