"""Only regular files are read: a FIFO would block forever and /dev/zero never ends."""

from __future__ import annotations

import json
import os
import threading

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli
from trtdet.errors import InputError
from trtdet.io.images import read_image
from trtdet.io.sources import Source, count_frames, iter_frames

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")


def _within(seconds: float, work):
    """Run ``work`` on a thread; fail (instead of hanging the suite) if it takes longer."""
    box: dict = {}

    def target():
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a special file)"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    return path


@needs_fifo
def test_a_fifo_is_refused_without_blocking(fifo):
    with pytest.raises(InputError, match=r"pipe\.jpg: is a FIFO, not a regular file"):
        _within(5, lambda: read_image(fifo))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_character_device_is_refused_without_reading_it():
    with pytest.raises(InputError, match=r"^/dev/zero: is a character device, not a regular file"):
        _within(5, lambda: read_image("/dev/zero"))


@needs_fifo
def test_a_fifo_named_like_a_video_is_refused_and_counted(tmp_path):
    video = tmp_path / "clip.mp4"
    os.mkfifo(video)
    source = Source(str(video), "video")
    assert _within(5, lambda: count_frames([source])) == 1
    frames = _within(5, lambda: list(iter_frames([source])))
    assert [f.error for f in frames] == [f"{video}: is a FIFO, not a regular file (only regular files, camera indexes and stream URLs are read)"]


@needs_fifo
@pytest.mark.parametrize("workers", [1, 3])
def test_cli_reports_special_files_and_runs_the_others(fifo, photos, workers):
    args = ["run", "-m", "yolo", "-s", str(fifo), "-s", "/dev/zero", "-s", str(photos["chelsea"]), "--json", "-", "-q",
            "--workers", str(workers)]
    result = _within(120, lambda: CliRunner().invoke(cli, args))
    assert result.exit_code == 2, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["source"] for r in rows] == [str(fifo), "/dev/zero", str(photos["chelsea"])]
    assert "is a FIFO" in rows[0]["error"] and "is a character device" in rows[1]["error"]
    assert rows[2]["error"] is None and "cat" in {d["label"] for d in rows[2]["detections"]}
