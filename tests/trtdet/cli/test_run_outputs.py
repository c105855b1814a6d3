"""`trtdet run --output/--json`: an unusable place is one line before the model loads; a write
that fails is a failure of that input, never a silent success."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("file/sub", "cannot create the directory"),
        pytest.param("/sys/kernel", "cannot write there", marks=pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="no sysfs")),
    ],
)
def test_an_unusable_output_directory_is_one_line_before_the_model_loads(tmp_path, where, problem):
    (tmp_path / "file").write_text("x")
    target = where if where.startswith("/") else str(tmp_path / where)
    # A missing --onnx would fail the model load: the output check must come first.
    result = run_cli("run", "-m", "yolo", "--onnx", str(tmp_path / "missing.onnx"), "--output", target, "-q")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert line.startswith(f"error: --output {target}: ") and problem in line


@pytest.mark.parametrize(("where", "problem"), [("missing/out.jsonl", "does not exist"), ("file/out.jsonl", "is not a directory"),
                                                (".", "is a directory")])
def test_an_unusable_json_path_is_one_line_before_the_model_loads(tmp_path, where, problem):
    (tmp_path / "file").write_text("x")
    target = str(tmp_path / where)
    result = run_cli("run", "-m", "yolo", "--onnx", str(tmp_path / "missing.onnx"), "--json", target, "-q")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert line.startswith(f"error: --json {target}: ") and problem in line


def test_a_write_that_fails_fails_its_input_and_the_others_still_run(tmp_path, photos):
    out = tmp_path / "out"
    (out / "chelsea.png").mkdir(parents=True)  # a folder already has the output's name
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(photos["coffee"]), "--output", str(out),
                     "--json", "-", "-q")
    assert result.exit_code == 2, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["error"].startswith(f"{photos['chelsea']}: cannot write ") and "Is a directory" in rows[0]["error"]
    assert rows[1]["error"] is None and (out / "coffee.png").is_file()
    assert "1 input(s) failed" in result.stderr


def test_a_symlink_in_the_output_directory_is_not_followed(tmp_path, photos):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "chelsea.png").symlink_to(victim)
    source = tmp_path / "chelsea.png"
    shutil.copy(photos["chelsea"], source)
    result = run_cli("run", "-m", "yolo", "-s", str(source), "--output", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious" and not (out / "chelsea.png").is_symlink()


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import numpy as np
from trtdet.detections import Detections
from trtdet.io.sinks import AnnotatedMediaSink
from trtdet.io.sources import Frame, Source

sink = AnnotatedMediaSink(Path(sys.argv[1]), ["thing"])
frame = Frame(Source(sys.argv[2], "video"), 0, image=np.zeros((48, 64, 3), np.uint8), fps=10.0)
sink.write(frame, Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
os.kill(os.getpid(), signal.SIGKILL)  # half way through the video, as a user's kill -9 would
"""


def test_the_next_run_removes_the_temporaries_a_killed_run_left(tmp_path, photos):
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    (out / "clips").mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out / "clips"), str(tmp_path / "clip.mp4")], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in (out / "clips").iterdir()]
    assert len(left) == 1 and left[0].startswith(".trtdet-") and left[0].endswith(".mp4")  # the killed run's leftover
    mine = out / f".trtdet-tmp-{os.getpid()}-abcdefgh.mp4"  # a live process's temporary: still being written
    mine.write_bytes(b"busy")
    users = out / ".trtdet-notes.mp4"  # not trtdet's naming: never touched
    users.write_bytes(b"mine")
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "--output", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert list((out / "clips").iterdir()) == []
    assert mine.read_bytes() == b"busy" and users.read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([".trtdet-notes.mp4", mine.name, "chelsea.png", "clips"])
