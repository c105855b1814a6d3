"""`trtdet run` when its destinations fail or the user stops it: a full disk under --json, an
annotated copy that cannot be written, Ctrl-C. Every record written is whole; the summary says
what was done; the exit code says how it ended."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def _trtdet() -> str:
    found = shutil.which("trtdet", path=str(Path(sys.executable).parent))
    assert found, "the trtdet console script is not installed"
    return found


@pytest.fixture(scope="module")
def five_photos(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("five")
    for k, name in enumerate(["chelsea", "coffee", "astronaut", "motorcycle", "rocket"]):
        shutil.copy(photos[name], folder / f"{k}_{photos[name].name}")
    return folder


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_json_on_a_full_device_is_one_line_and_exit_1(five_photos):
    """/dev/full takes no byte (ENOSPC): nothing could be written, so exit 1 -- after the summary."""
    result = run_cli("run", "-m", "yolo", "-s", str(five_photos), "--json", "/dev/full", "-q")
    assert result.exit_code == 1, result.output
    names = sorted(str(p) for p in five_photos.iterdir())
    assert _error_lines(result.stderr) == [
        "error: --json /dev/full: cannot write (No space left on device); 0 record(s) written whole, the run stopped; "
        f"not recorded: 5 input(s): {', '.join(names)}"
    ]
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[-2].startswith("1 input(s), ") and lines[-1] == "results: detections in /dev/full"


def test_json_on_stdout_that_is_a_full_device(five_photos):
    with open("/dev/full", "w") as full:
        done = subprocess.run([_trtdet(), "run", "-m", "yolo", "-s", str(five_photos), "--json", "-", "-q"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    (line,) = _error_lines(done.stderr)
    assert line.startswith("error: --json stdout: cannot write (No space left on device); 0 record(s) written whole")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def _timeless(line: bytes) -> dict:
    """A record without its ``speed`` (milliseconds differ from run to run)."""
    return {key: value for key, value in json.loads(line).items() if key != "speed"}


def test_a_file_that_fills_up_keeps_every_written_record_whole(five_photos, tmp_path):
    """The file may grow to a limit (RLIMIT_FSIZE, as a full disk: the write that crosses it is cut
    short, then EFBIG). The cut record is removed; the records before it stay; exit 2."""
    full = tmp_path / "full.jsonl"
    done = subprocess.run([_trtdet(), "run", "-m", "yolo", "-s", str(five_photos), "--json", str(full), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = full.read_bytes().splitlines(keepends=True)
    assert len(reference) == 5
    limit = len(reference[0]) + len(reference[1]) + len(reference[2]) // 2  # room for 2.5 records

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    capped = tmp_path / "capped.jsonl"
    done = subprocess.run([_trtdet(), "run", "-m", "yolo", "-s", str(five_photos), "--json", str(capped)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert done.returncode == 2, done.stderr
    written = capped.read_bytes()  # two whole records, no half of the third (equal but for their ms)
    assert written.endswith(b"\n") and [_timeless(line) for line in written.splitlines()] == [_timeless(r) for r in reference[:2]]
    rest = [json.loads(line)["source"] for line in reference[2:]]
    assert _error_lines(done.stderr) == [
        f"error: --json {capped}: cannot write (File too large); 2 record(s) written whole, the run stopped; "
        f"not recorded: 3 input(s): {', '.join(rest)}"
    ]
    lines = done.stderr.splitlines()
    assert lines[-2].startswith("3 input(s), ") and lines[-1] == f"results: detections in {capped}"


def test_an_annotated_copy_that_cannot_be_written_keeps_the_detections(tmp_path, photos):
    out = tmp_path / "out"
    (out / "chelsea.png").mkdir(parents=True)  # a folder has the annotated file's name
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(photos["coffee"]), "--output", str(out),
                     "--json", "-", "-q")
    assert result.exit_code == 2, result.output
    failed, fine = (json.loads(line) for line in result.stdout.splitlines())
    assert failed["error"].startswith(f"{photos['chelsea']}: cannot write ") and failed["output"] is None
    assert "cat" in {d["label"] for d in failed["detections"]}  # detected: only the copy failed
    assert fine["output"] == str(out / "coffee.png") and fine["warning"] is None and fine["error"] is None


def test_records_always_carry_warning_and_output(photos):
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", "/nonexistent/x.jpg", "--json", "-", "-q")
    assert result.exit_code == 2
    for record in map(json.loads, result.stdout.splitlines()):
        assert list(record) == ["source", "frame", "width", "height", "detections", "error", "warning", "output", "speed"]
        assert record["warning"] is None and record["output"] is None


def test_output_naming_a_file_writes_that_file_for_one_input(tmp_path, photos):
    import cv2

    target = tmp_path / "results" / "cat.jpg"
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "--output", str(target), "--json", "-", "-q")
    assert result.exit_code == 0, result.output
    (record,) = map(json.loads, result.stdout.splitlines())
    assert record["output"] == str(target) and target.is_file()
    written = cv2.imread(str(target))
    assert written.shape == cv2.imread(str(photos["chelsea"])).shape
    assert sorted(p.name for p in target.parent.iterdir()) == ["cat.jpg"]  # no folder called cat.jpg, no leftovers


def test_output_naming_a_file_with_several_inputs_says_it_needs_a_folder(tmp_path, photos):
    target = tmp_path / "cat.jpg"
    result = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(photos["coffee"]),
                     "--output", str(target), "--onnx", str(tmp_path / "missing.onnx"))  # checked before the model
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: --output {target}: names one file, but there are 2 inputs; "
        "give a folder (e.g. --output results/) to hold an annotated copy of each"
    ]
    assert not target.exists()


def test_ctrl_c_prints_what_was_done_and_exits_130(tmp_path, photos):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(200):
        os.link(photos["chelsea"], folder / f"{k:03d}.png") if k else shutil.copy(photos["chelsea"], folder / "000.png")
    records = tmp_path / "records.jsonl"
    child = subprocess.Popen([_trtdet(), "run", "-m", "yolo", "-s", str(folder), "--json", str(records), "--workers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            if records.exists() and records.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.1)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    written = [json.loads(line) for line in records.read_text().splitlines()]  # every line whole
    assert 2 <= len(written) < 200
    lines = stderr.splitlines()
    interrupted = next(line for line in lines if line.startswith("interrupted: "))
    assert interrupted.startswith(f"interrupted: {200 - len(written)} input(s) not processed: ")
    assert lines[-2].startswith(f"{len(written)} input(s), ") or lines[-2].startswith(f"{len(written) + 1} input(s), ")
    assert lines[-1] == f"results: detections in {records}"
