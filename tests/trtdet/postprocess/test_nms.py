"""The core's NMS (``trtdet.postprocess.nms``): hand-computed boxes and OpenCV's ``cv2.dnn.NMSBoxes``."""

from __future__ import annotations

import cv2
import numpy as np

from trtdet.postprocess import box_iou_one_to_many, nms


def test_iou_hand_computed():
    box = np.array([0, 0, 10, 10], np.float32)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4], [0, 0, 0, 0]], np.float32)
    # identical; 50/150; touching corners; inside (4/100); a degenerate box (no union with itself, IoU 0 here: 0/100)
    np.testing.assert_allclose(box_iou_one_to_many(box, boxes), [1.0, 1 / 3, 0.0, 0.04, 0.0])
    empty = np.zeros(4, np.float32)
    assert box_iou_one_to_many(empty, empty[None])[0] == 0.0  # no union: IoU 0, not NaN


def test_greedy_class_aware_suppression_by_hand():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: best, kept
            [1, 0, 11, 10],  # 1: IoU 90/110 = 0.818 with 0, same class: suppressed
            [1, 0, 11, 10],  # 2: same place, other class: kept
            [20, 20, 30, 30],  # 3: far away: kept
            [2, 0, 12, 10],  # 4: IoU 80/120 = 0.667 with 0 (<= 0.7): kept ...
            [3, 0, 13, 10],  # 5: ... and suppresses this one (IoU 90/110 with 4); 0 alone would not (70/130)
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    classes = np.array([0, 0, 1, 0, 0, 0])
    assert nms(boxes, scores, classes, 0.7).tolist() == [0, 2, 3, 4]
    assert nms(boxes, scores, None, 0.7).tolist() == [0, 3, 4]  # one class: 2 goes with 1
    assert nms(boxes, scores, classes, 0.7, max_keep=2).tolist() == [0, 2]
    # IoU exactly at the threshold keeps the box (suppression is strictly greater).
    assert nms(boxes[:2], scores[:2], classes[:2], 90 / 110).tolist() == [0, 1]


def test_order_is_score_then_index():
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.5], np.float32), None, 0.5).tolist() == [1, 0, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None, 0.5).tolist() == []


def test_single_class_matches_cv2_nms_boxes_on_random_boxes():
    rng = np.random.default_rng(7)
    for trial in range(5):
        n = 300
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(5, 80, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.uniform(0.01, 1, n).astype(np.float32)
        threshold = [0.3, 0.45, 0.5, 0.7, 0.9][trial]
        ours = nms(boxes, scores, None, threshold)
        reference = cv2.dnn.NMSBoxes([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes.tolist()],
                                     scores.tolist(), 0.0, threshold)
        assert ours.tolist() == np.asarray(reference).ravel().tolist()  # same survivors, same order
