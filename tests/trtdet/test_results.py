"""``trtdet.Result``: a ``Detections`` that knows its source, image, names and per-stage speed."""

from __future__ import annotations

import importlib.util
import time

import cv2
import numpy as np
import pytest

import trtdet
from trtdet.errors import UsageError
from trtdet.results import Result

NAMES = {0: "person", 1: "bicycle", 2: "car"}
#: class 0's colour by hand: HSV (0, 200, 255) is pure red hue, V=255, min = 255 * (1 - 200/255) = 55.
RED_BGR = (55, 55, 255)


def _result(image: np.ndarray | None = None, **context) -> Result:
    image = np.zeros((100, 200, 3), np.uint8) if image is None else image
    xyxy = np.array([[20, 30, 80, 70], [100, 10, 180, 90]], np.float32)
    return Result(xyxy, np.array([0.9, 0.4], np.float32), np.array([0, 2]), source="a.jpg", image=image,
                  names=dict(NAMES), speed={"preprocess": 1.0, "inference": 2.0, "postprocess": 0.5}, **context)


@pytest.fixture(scope="module")
def yolo():
    with trtdet.load("yolo") as detector:
        yield detector


def test_a_result_is_detections_with_xywh_and_normalised_boxes_by_hand():
    result = _result()
    assert isinstance(result, trtdet.Detections) and trtdet.Result is Result
    # (20,30)-(80,70): centre (50, 50), size 60 x 40; (100,10)-(180,90): centre (140, 50), 80 x 80
    np.testing.assert_allclose(result.xywh, [[50, 50, 60, 40], [140, 50, 80, 80]])
    # the image is 200 wide, 100 high
    np.testing.assert_allclose(result.xyxyn, [[0.1, 0.3, 0.4, 0.7], [0.5, 0.1, 0.9, 0.9]])
    np.testing.assert_allclose(result.xywhn, [[0.25, 0.5, 0.3, 0.4], [0.7, 0.5, 0.4, 0.8]])
    assert result.xywh.dtype == np.float32 and Result.of(trtdet.Detections.empty()).xywh.shape == (0, 4)


def test_indexing_keeps_source_image_names_and_speed_and_shares_the_image():
    result = _result()
    kept = result[result.confidence > 0.5]
    assert isinstance(kept, Result) and len(kept) == 1 and kept.class_id.tolist() == [0]
    assert (kept.source, kept.names, kept.speed) == (result.source, result.names, result.speed)
    assert kept.image is result.image  # a reference, never a copy
    assert isinstance(result[1], Result) and result[1].class_id.tolist() == [2]


def test_plot_draws_box_edges_at_the_known_pixels_on_a_copy():
    image = np.zeros((100, 200, 3), np.uint8)
    result = _result(image)[np.array([0])]
    canvas = result.plot()
    assert canvas is not image and not image.any()  # the image the result holds is untouched
    # cv2.rectangle with thickness 1 (min side 100 < 400) draws x in [20, 80], y in [30, 70]
    for y, x in [(50, 20), (50, 80), (70, 50)]:  # left, right and bottom edges (the label sits on the top one)
        assert tuple(canvas[y, x]) == RED_BGR, (y, x, canvas[y, x])
    assert not canvas[50, 50].any() and not canvas[50, 81].any() and not canvas[71, 50].any()  # inside, outside


def test_save_writes_an_image_opencv_reads_back(tmp_path):
    result = _result()
    png = result.save(tmp_path / "out.png")
    assert png == tmp_path / "out.png"
    np.testing.assert_array_equal(cv2.imread(str(png)), result.plot())  # PNG is lossless
    jpeg = cv2.imread(str(result.save(tmp_path / "out.jpg")))
    assert jpeg.shape == (100, 200, 3)
    assert np.abs(jpeg.astype(int) - result.plot().astype(int)).mean() < 3


@pytest.mark.parametrize(("name", "message"), [
    ("out.txt", "cannot save an image as '.txt'; use one of .jpg"),
    ("out", "cannot save an image as 'a file without a suffix'"),
    ("missing/dir/out.png", "cannot write (No such file or directory)"),
])
def test_save_to_a_bad_path_is_one_line_naming_it(tmp_path, name, message):
    with pytest.raises(UsageError) as caught:
        _result().save(tmp_path / name)
    text = str(caught.value)
    assert text.startswith(str(tmp_path / name) + ": ") and message in text and "\n" not in text


def test_no_image_means_one_line_not_a_crash():
    failed = Result.of(trtdet.Detections.empty(), source="b.jpg", error="b.jpg: file is empty")
    with pytest.raises(UsageError, match=r"^b\.jpg: no image to draw on \(b\.jpg: file is empty\)$"):
        failed.plot()
    with pytest.raises(UsageError, match="no image, so no normalised boxes"):
        _ = failed.xyxyn


def test_to_json_and_records_name_the_classes_without_arguments():
    import json

    records = json.loads(_result().to_json())
    assert [r["label"] for r in records] == ["person", "car"]
    assert records[0] == {"box": [20.0, 30.0, 80.0, 70.0], "score": 0.9, "class_id": 0, "label": "person"}
    assert [r["label"] for r in _result().to_records(["a", "b", "c"])] == ["a", "c"]  # explicit names win


@pytest.mark.skipif(importlib.util.find_spec("supervision") is None, reason="supervision is not installed")
def test_to_supervision_fills_in_the_class_names():
    import supervision as sv

    converted = _result().to_supervision()
    assert isinstance(converted, sv.Detections)
    assert converted.data["class_name"].tolist() == ["person", "car"]
    np.testing.assert_array_equal(converted.xyxy, _result().xyxy)


def test_repr_is_one_short_line_without_the_image():
    image = np.full((480, 640, 3), 7, np.uint8)
    text = repr(_result(image))
    assert text == str(_result(image))
    assert text == ("Result(2 detection(s), source='a.jpg', image shape=(480, 640, 3), "
                    "speed: 1.0ms preprocess, 2.0ms inference, 0.5ms postprocess)")
    assert "\n" not in text and "array" not in text and len(text) < 200


def test_a_call_returns_results_with_source_image_names_and_speed(yolo, photos):
    image = cv2.imread(str(photos["chelsea"]))
    start = time.perf_counter()
    from_array = yolo(image)
    wall_ms = 1e3 * (time.perf_counter() - start)
    assert isinstance(from_array, Result) and from_array.source == "image 0"
    assert np.shares_memory(from_array.image, image)  # the caller's array, not a copy
    assert from_array.names == dict(enumerate(yolo.class_names)) and from_array.names[15] == "cat"
    assert set(from_array.speed) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in from_array.speed.values()) and from_array.speed["inference"] > 0
    assert sum(from_array.speed.values()) <= wall_ms
    from_path = yolo(str(photos["chelsea"]))
    assert from_path.source == str(photos["chelsea"]) and from_path.image.shape == image.shape
    assert from_path.to_records()[0]["label"] == "cat"


def test_speed_is_per_image_and_the_batch_total_fits_the_call(photos):
    image = cv2.imread(str(photos["coffee"]))
    with trtdet.load("yolo", batch=2) as detector:
        detector([image])  # warm up
        start = time.perf_counter()
        results = detector([image, image, image])  # a batch of 2, then a batch of 1
        wall_ms = 1e3 * (time.perf_counter() - start)
    assert [r.source for r in results] == ["image 0", "image 1", "image 2"]
    assert results[0].speed == results[1].speed  # one batch, its time split evenly
    assert sum(sum(r.speed.values()) for r in results) <= wall_ms


def test_stream_yields_results_including_a_failed_frame(yolo, photos, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    good, bad = list(yolo.stream([str(photos["chelsea"]), str(empty)]))
    assert isinstance(good, Result) and good.source == str(photos["chelsea"]) and good.index is None
    assert good.error is None and good.image.shape[2] == 3 and "cat" in {r["label"] for r in good.to_records()}
    assert set(good.speed) == {"preprocess", "inference", "postprocess"}
    assert isinstance(bad, Result) and bad.source == str(empty) and bad.error == f"{empty}: file is empty"
    assert len(bad) == 0 and bad.image is None and bad.speed == {}
    assert "file is empty" in repr(bad)
