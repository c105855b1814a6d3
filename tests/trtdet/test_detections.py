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
