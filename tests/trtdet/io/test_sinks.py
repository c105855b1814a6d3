"""Sinks: the JSON-lines record (DESIGN.md's contract, byte for byte) and annotated images/videos."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np

from trtdet.detections import Detections
from trtdet.io.draw import draw_detections
from trtdet.io.sinks import AnnotatedMediaSink, JsonLinesSink, frame_record
from trtdet.io.sources import Frame, Source

NAMES = ("person", "cat")


def _detections() -> Detections:
    return Detections(
        np.array([[1.234, 2.0, 30.5, 40.0], [5.0, 6.0, 7.0, 8.0]], np.float32),
        np.array([0.91234, 0.5], np.float32),
        np.array([1, 7], np.int64),
    )


def _frame(name: str, index: int | None = None, image: np.ndarray | None = None, error: str | None = None) -> Frame:
    kind = "video" if name.endswith(".mp4") else "image"
    return Frame(Source(name, kind), index, image, error, fps=10.0 if index is not None else None)


def test_json_line_of_an_image_is_the_documented_record():
    stream = io.StringIO()
    frame = _frame("dir/a.jpg", image=np.zeros((48, 64, 3), np.uint8))
    JsonLinesSink(stream).write(frame_record(frame, _detections(), NAMES))
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert line == (
        '{"source": "dir/a.jpg", "frame": null, "width": 64, "height": 48, "detections": ['
        '{"box": [1.23, 2.0, 30.5, 40.0], "score": 0.9123, "class_id": 1, "label": "cat"}, '
        '{"box": [5.0, 6.0, 7.0, 8.0], "score": 0.5, "class_id": 7, "label": "7"}], "error": null}\n'
    )


def test_json_lines_of_a_failed_input_and_of_video_frames():
    stream = io.StringIO()
    sink = JsonLinesSink(stream)
    sink.write(frame_record(_frame("bad.jpg", error="bad.jpg: file is empty"), None, NAMES))
    sink.write(frame_record(_frame("clip.mp4", index=3, image=np.zeros((4, 5, 3), np.uint8)), Detections.empty(), NAMES))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {"source": "bad.jpg", "frame": None, "width": None, "height": None, "detections": [],
                     "error": "bad.jpg: file is empty"}
    assert second == {"source": "clip.mp4", "frame": 3, "width": 5, "height": 4, "detections": [], "error": None}


def test_annotated_images_are_the_drawn_detections_under_unique_names(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    sink = AnnotatedMediaSink(tmp_path / "out", NAMES)
    detections = _detections()
    sink.write(_frame("x/photo.png", image=image), detections)
    sink.write(_frame("y/photo.png", image=image), Detections.empty())  # same stem, another file
    sink.write(_frame("z/scan.tiff", image=image), detections)  # no writer for the suffix: .jpg
    sink.close()
    assert [p.name for p in sink.written] == ["photo.png", "photo_1.png", "scan.jpg"]
    np.testing.assert_array_equal(cv2.imread(str(sink.written[0])), draw_detections(image, detections, NAMES))
    np.testing.assert_array_equal(cv2.imread(str(sink.written[1])), image)  # nothing to draw
    assert not np.array_equal(draw_detections(image, detections, NAMES), image)


def test_video_frames_go_to_one_mp4_per_source(tmp_path):
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    for index in range(5):
        sink.write(_frame("cam/clip.mp4", index=index, image=np.full((32, 48, 3), 40 * index, np.uint8)), Detections.empty())
    sink.close()
    assert [p.name for p in sink.written] == ["clip.mp4"]
    capture = cv2.VideoCapture(str(sink.written[0]))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (32, 48, 3)
        frames += 1
    capture.release()
    assert frames == 5
