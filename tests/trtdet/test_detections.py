"""The Detections data model: validation messages, indexing, JSON records."""

from __future__ import annotations

import numpy as np
import pytest

from trtdet.detections import Detections


def test_valid_detections_index_by_mask_and_int():
    det = Detections([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.4], [1, 2], {"track": np.array([7, 8])})
    assert len(det) == 2 and det.xyxy.dtype == np.float32 and det.class_id.dtype == np.int64
    high = det[det.confidence > 0.5]
    assert len(high) == 1 and high.class_id.tolist() == [1] and high.data["track"].tolist() == [7]
    assert det[1].confidence.tolist() == pytest.approx([0.4])


def test_empty():
    det = Detections.empty()
    assert len(det) == 0 and det.xyxy.shape == (0, 4) and det.to_records() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((2, 3)), "confidence": np.zeros(2), "class_id": np.zeros(2)}, r"xyxy: expected shape \(N, 4\), got \(2, 3\)"),
        ({"xyxy": np.zeros((2, 4)), "confidence": np.zeros(3), "class_id": np.zeros(2)}, "confidence: expected 2 rows"),
        ({"xyxy": np.zeros((2, 4)), "confidence": np.zeros(2), "class_id": [0.5, 1]}, "class_id: expected integers"),
        ({"xyxy": np.zeros((1, 4)), "confidence": np.zeros(1), "class_id": [0], "data": {"x": [1, 2]}}, r"data\['x'\]: expected 1 rows"),
    ],
)
def test_invalid_detections_say_expected_and_got(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_records_carry_labels():
    det = Detections([[1.234, 2, 3, 4]], [0.87654], [1])
    assert det.to_records(["cat", "dog"]) == [{"box": [1.23, 2.0, 3.0, 4.0], "score": 0.8765, "class_id": 1, "label": "dog"}]


def test_detections_never_alias_the_buffer_they_were_built_from():
    """A decoder's reused output buffer must not show through (one-row slices are 'contiguous')."""
    buffer = np.zeros((4, 6), np.float32)
    buffer[0] = [1, 2, 3, 4, 0.9, 2]
    rows = buffer[:1]
    det = Detections(np.ascontiguousarray(rows[:, :4]), rows[:, 4], rows[:, 5].astype(np.int64))
    buffer[:] = -1  # the next batch overwrites the buffer
    assert det.xyxy.tolist() == [[1, 2, 3, 4]] and det.confidence.tolist() == pytest.approx([0.9])


# -- supervision -------------------------------------------------------------------------------


def test_to_supervision_gives_a_real_supervision_detections():
    import supervision as sv

    d = Detections([[1, 2, 30, 40], [5, 6, 7, 8]], [0.9, 0.3], [2, 0], {"track_id": np.array([4, 9])})
    converted = d.to_supervision(["person", "bicycle", "car"])
    assert isinstance(converted, sv.Detections) and len(converted) == 2
    assert np.array_equal(converted.xyxy, d.xyxy) and np.array_equal(converted.confidence, d.confidence)
    assert np.array_equal(converted.class_id, [2, 0]) and np.array_equal(converted.tracker_id, [4, 9])
    assert list(converted.data["class_name"]) == ["car", "person"]
    # supervision's own operations work on it: its box areas and its confidence filter
    assert np.allclose(converted.box_area, [29 * 38, 4])
    assert len(converted[converted.confidence > 0.5]) == 1
    # and its annotators draw it (the label annotator reads data["class_name"])
    canvas = sv.LabelAnnotator().annotate(np.zeros((50, 50, 3), np.uint8), converted)
    assert canvas.any()


def test_from_supervision_keeps_boxes_scores_classes_tracks_and_data():
    import supervision as sv

    source = sv.Detections(
        xyxy=np.array([[0, 0, 10, 10], [2, 2, 4, 4]], np.float64),
        confidence=np.array([0.5, 0.7]),
        class_id=np.array([3, 1]),
        tracker_id=np.array([11, 12]),
        data={"zone": np.array(["a", "b"])},
    )
    d = Detections.from_supervision(source)
    assert d.xyxy.dtype == np.float32 and np.array_equal(d.xyxy, source.xyxy.astype(np.float32))
    assert np.allclose(d.confidence, [0.5, 0.7]) and np.array_equal(d.class_id, [3, 1])
    assert np.array_equal(d.data["track_id"], [11, 12]) and list(d.data["zone"]) == ["a", "b"]
    assert [r["track_id"] for r in d.to_records()] == [11, 12]
    back = d.to_supervision()
    assert np.array_equal(back.tracker_id, source.tracker_id) and list(back.data["zone"]) == ["a", "b"]
    assert len(Detections.from_supervision(sv.Detections.empty())) == 0
    bare = Detections.from_supervision(sv.Detections(xyxy=np.array([[1.0, 1, 2, 2]])))
    assert (bare.confidence.tolist(), bare.class_id.tolist()) == ([1.0], [0])


def test_to_json_is_the_records_as_a_json_array():
    import json

    d = Detections([[1, 2, 3, 4]], [0.5], [1])
    assert json.loads(d.to_json(["a", "b"])) == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "class_id": 1, "label": "b"}]
