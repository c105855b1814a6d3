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


# -- writes that must not go wrong silently ----------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from trtdet.errors import InputError, UsageError  # noqa: E402
from trtdet.io.sinks import check_writable_file, prepare_output_directory  # noqa: E402

IMAGE = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_a_name_that_is_not_utf8_is_written_under_the_same_bytes(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.png")  # surrogate-escaped, as Python gives it from the file system
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    sink.write(_frame(f"in/{name}", image=IMAGE), _detections())
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9-\xff.png"]
    written = (tmp_path / name).read_bytes()
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR),
                                  draw_detections(IMAGE, _detections(), NAMES))


def test_a_video_whose_name_is_not_utf8_is_written_under_the_same_bytes(tmp_path):
    name = os.fsdecode(b"clip-\xe9.mp4")
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    for index in range(3):
        sink.write(_frame(name, index=index, image=IMAGE), Detections.empty())
    assert sink.close() == []
    assert os.listdir(os.fsencode(tmp_path)) == [b"clip-\xe9.mp4"]
    os.rename(tmp_path / name, tmp_path / "clip-x.mp4")  # read it back under an ASCII name
    capture = cv2.VideoCapture(str(tmp_path / "clip-x.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_a_planted_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").symlink_to(victim)
    sink = AnnotatedMediaSink(out, NAMES)
    sink.write(_frame("photo.png", image=IMAGE), Detections.empty())
    assert victim.read_text() == "precious"
    assert not (out / "photo.png").is_symlink()
    np.testing.assert_array_equal(cv2.imread(str(out / "photo.png")), IMAGE)
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]  # no temporary file left behind


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    sink.write(_frame("photo.png", image=IMAGE), Detections.empty())
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "photo.png").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_a_folder_with_the_outputs_name_fails_that_input(tmp_path):
    (tmp_path / "photo.png").mkdir()
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    with pytest.raises(InputError, match=r"^in/photo\.png: cannot write .*photo\.png \(Is a directory\)$"):
        sink.write(_frame("in/photo.png", image=IMAGE), Detections.empty())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_an_unusable_output_directory_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        prepare_output_directory(tmp_path / "file")
    with pytest.raises(UsageError, match="cannot create the directory"):
        prepare_output_directory(tmp_path / "file" / "sub")
    if os.path.isdir("/sys/kernel"):  # sysfs: no regular files can be created, even by root
        with pytest.raises(UsageError, match=r"^--output /sys/kernel: cannot write there"):
            prepare_output_directory("/sys/kernel")
    assert prepare_output_directory(tmp_path / "new" / "deep").is_dir()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_a_usage_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(UsageError, match="cannot write there"):
        prepare_output_directory(folder)


def test_json_paths_are_checked_without_touching_the_file(tmp_path):
    with pytest.raises(UsageError, match=r"^--json .*out\.jsonl: the folder .*missing does not exist$"):
        check_writable_file(tmp_path / "missing" / "out.jsonl")
    with pytest.raises(UsageError, match="is a directory"):
        check_writable_file(tmp_path)
    (tmp_path / "f").write_text("keep")
    with pytest.raises(UsageError, match="is not a directory"):
        check_writable_file(tmp_path / "f" / "out.jsonl")
    check_writable_file(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "keep"


def test_cli_with_a_non_utf8_input_name_writes_its_annotated_copy(tmp_path, photos):
    """Run as a child process: cv2.imwrite on such a name crashed the interpreter."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"ph\xf6to.jpg")
    (folder / name).write_bytes(photos["chelsea"].read_bytes())
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "trtdet.cli.main", "run", "-m", "yolo", "-s", os.fsencode(folder),
                           "--output", str(out), "--json", str(tmp_path / "r.jsonl")], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert os.listdir(os.fsencode(out)) == [b"ph\xf6to.jpg"]
    assert cv2.imdecode(np.fromfile(os.fsencode(out / name), np.uint8), cv2.IMREAD_COLOR).shape == cv2.imread(str(photos["chelsea"])).shape


def test_a_video_that_cannot_be_written_is_reported_once_not_per_frame(tmp_path):
    (tmp_path / "clip.mp4").mkdir()  # the output's name is taken by a folder: the final rename fails
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    for index in range(3):
        sink.write(_frame("in/clip.mp4", index=index, image=IMAGE), Detections.empty())
    errors = sink.close()
    assert [str(e) for e in errors] == [f"in/clip.mp4: cannot write {tmp_path / 'clip.mp4'} (Is a directory)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # the temporary file is gone


def test_a_video_writer_that_cannot_open_fails_its_first_frame_only(tmp_path, monkeypatch):
    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    sink = AnnotatedMediaSink(tmp_path, NAMES)
    with pytest.raises(InputError, match="OpenCV cannot open an mp4v video writer"):
        sink.write(_frame("clip.mp4", index=0, image=IMAGE), Detections.empty())
    sink.write(_frame("clip.mp4", index=1, image=IMAGE), Detections.empty())  # not a second error
    assert sink.close() == [] and list(tmp_path.iterdir()) == []


def test_json_lines_cut_a_failed_record_back_and_keep_what_was_there(tmp_path, monkeypatch):
    """A disk that fills mid-line: the bytes of the cut record go, earlier records (and, for a file
    opened to append, the content before them) stay whole."""
    import errno
    import os

    import trtdet.io.sinks as sinks

    real_write = os.write
    room = {"bytes": 10**9}

    def filling_write(fd, data):
        if room["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[: room["bytes"]]))
        room["bytes"] -= n
        return n

    monkeypatch.setattr(sinks.os, "write", filling_write)
    record = frame_record(_frame("a.jpg", image=np.zeros((4, 5, 3), np.uint8)), Detections.empty(), NAMES)
    line = (json.dumps(record, separators=(", ", ": ")) + "\n").encode()
    for mode, before in (("wb", b""), ("ab", b"earlier run\n")):
        path = tmp_path / f"records-{mode}.jsonl"
        path.write_bytes(before)
        room["bytes"] = 2 * len(line) + len(line) // 2
        sink = JsonLinesSink(open(path, mode, buffering=0))  # noqa: SIM115 - closed below
        sink.write(record)
        sink.write(record)
        with pytest.raises(OSError, match="No space left on device"):
            sink.write(record)
        sink.close()
        assert path.read_bytes() == before + 2 * line and sink.written == 2
