"""YOLO decode and NMS on hand-computed tensors, and NMS against cv2.dnn.NMSBoxesBatched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtdet.errors import ModelError
from trtdet.postprocess import nms
from trtdet.preprocess.affine import letterbox_transform
from trtdet_yolo.decode import YoloDecoder, decode_yolo, detect_head

IDENTITY = letterbox_transform((64, 64), (64, 64))  # scale 1, no padding


def _v8(anchors: list[tuple[float, float, float, float, list[float]]], nc: int) -> np.ndarray:
    out = np.zeros((1, 4 + nc, len(anchors)), np.float32)
    for i, (cx, cy, w, h, scores) in enumerate(anchors):
        out[0, :4, i] = cx, cy, w, h
        out[0, 4:, i] = scores
    return out


def test_v8_hand_computed_boxes_scores_and_suppression():
    output = _v8(
        [
            (20, 20, 10, 10, [0.9, 0.1]),  # kept: box 15..25
            (21, 20, 10, 10, [0.8, 0.0]),  # IoU with first = 90/110 = 0.818 > 0.7, same class: suppressed
            (21, 20, 10, 10, [0.0, 0.85]),  # same place, other class: kept (class-aware)
            (50, 50, 8, 4, [0.2, 0.26]),  # class 1 at 0.26 > 0.25: kept
            (40, 40, 8, 8, [0.25, 0.0]),  # exactly the threshold: dropped (strictly greater)
        ],
        nc=2,
    )
    (det,) = decode_yolo(output, [IDENTITY], head="v8", num_classes=2, conf_threshold=0.25, iou_threshold=0.7)
    np.testing.assert_allclose(det.confidence, [0.9, 0.85, 0.26], rtol=1e-6)
    assert det.class_id.tolist() == [0, 1, 1]
    np.testing.assert_allclose(det.xyxy, [[15, 15, 25, 25], [16, 15, 26, 25], [46, 48, 54, 52]])


def test_agnostic_nms_suppresses_across_classes_by_hand():
    """Ultralytics' agnostic=True: the class-1 box at IoU 0.818 with the kept class-0 box goes too."""
    output = _v8(
        [
            (20, 20, 10, 10, [0.9, 0.1]),  # kept
            (21, 20, 10, 10, [0.0, 0.85]),  # other class, IoU 90/110 = 0.818 > 0.7: suppressed when agnostic
            (50, 50, 8, 4, [0.2, 0.26]),  # no overlap: kept
        ],
        nc=2,
    )
    aware, agnostic = (
        YoloDecoder(2, 0.25, 0.7, 300, agnostic=flag)({"output0": output}, [IDENTITY])[0] for flag in (False, True)
    )
    assert aware.class_id.tolist() == [0, 1, 1]
    assert agnostic.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(agnostic.xyxy, [[15, 15, 25, 25], [46, 48, 54, 52]])


def test_iou_below_threshold_keeps_both():
    # IoU of 10x10 boxes shifted by 3: 70/130 = 0.54 < 0.7
    output = _v8([(20, 20, 10, 10, [0.9]), (23, 20, 10, 10, [0.8])], nc=1)
    (det,) = decode_yolo(output, [IDENTITY], head="v8", num_classes=1)
    assert len(det) == 2


def test_v5_multiplies_objectness_and_prefilters_on_it():
    nc = 2
    out = np.zeros((1, 3, 5 + nc), np.float32)
    out[0, 0] = [10, 10, 4, 4, 0.9, 0.5, 0.1]  # 0.45 class 0
    out[0, 1] = [30, 30, 4, 4, 0.2, 0.0, 1.0]  # objectness 0.2 <= 0.25: dropped
    out[0, 2] = [50, 50, 4, 4, 0.5, 0.1, 0.6]  # 0.30 class 1
    (det,) = decode_yolo(out, [IDENTITY], head="v5", num_classes=nc)
    np.testing.assert_allclose(det.confidence, [0.45, 0.30], rtol=1e-6)
    assert det.class_id.tolist() == [0, 1]


def test_boxes_map_back_through_the_letterbox():
    transform = letterbox_transform((100, 200), (64, 64))  # scale 0.32, 16 rows of padding top
    output = _v8([(32, 32, 32, 16, [0.9])], nc=1)
    (det,) = decode_yolo(output, [transform], head="v8", num_classes=1)
    np.testing.assert_allclose(det.xyxy, [[50, 25, 150, 75]], atol=1e-4)


def test_max_detections_keeps_the_best():
    anchors = [(10 + 6 * i, 10, 4, 4, [0.3 + 0.01 * i]) for i in range(8)]
    (det,) = decode_yolo(_v8(anchors, 1), [IDENTITY], head="v8", num_classes=1, max_detections=3)
    np.testing.assert_allclose(det.confidence, [0.37, 0.36, 0.35], rtol=1e-6)


def test_head_detection_and_validation():
    assert detect_head((1, 84, 8400), 80) == "v8"
    assert detect_head((1, 25200, 85), 80) == "v5"
    assert detect_head((1, 85, 8400), 80) is None
    decoder = YoloDecoder(80, 0.25, 0.7, 300)
    with pytest.raises(ModelError, match=r"bad\.onnx: output does not fit the yolo head: expected \[B, 84, N\]"):
        decoder.validate({"output0": (1, 85, 8400)}, "bad.onnx")


def test_nms_matches_cv2_batched_nms_on_random_boxes():
    rng = np.random.default_rng(1)
    n = 400
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    ours = nms(boxes, scores, classes, 0.5)
    reference = cv2.dnn.NMSBoxesBatched(
        [list(map(float, (b[0], b[1], b[2] - b[0], b[3] - b[1]))) for b in boxes], scores.tolist(), classes.tolist(), 0.0, 0.5
    )
    assert sorted(ours.tolist()) == sorted(np.asarray(reference).ravel().tolist())
