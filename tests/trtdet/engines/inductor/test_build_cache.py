"""The inductor backend's cache folder: a file, an unwritable folder or one under a file is one line, before any compile."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

import trtdet  # noqa: E402
from trtdet.errors import UsageError  # noqa: E402


def _unwritable_folder(tmp_path: Path) -> Path:
    """An existing folder this process cannot create files in: a mode-0555 folder, or (as root, who ignores
    modes) a read-only system folder; checked by trying, not assumed."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    for candidate in (readonly, Path("/sys"), Path("/proc/sys")):
        try:
            handle, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(handle)
        os.unlink(probe)
    raise AssertionError("no unwritable folder found to test with")


def _cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "cache-file"
    a_file.write_text("not a folder")
    return {
        "file": (a_file, "is a file, not a folder"),
        "under a file": (a_file / "trtdet", "is a file, not a folder"),
        "unwritable": (_unwritable_folder(tmp_path), "the trtdet cache cannot be used"),
    }


@pytest.mark.parametrize("case", ["file", "under a file", "unwritable"])
def test_an_unusable_cache_is_one_line_naming_it(tmp_path, monkeypatch, case):
    cache, problem = _cases(tmp_path)[case]
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(cache))
    with pytest.raises(UsageError) as info:
        trtdet.load("yolo", backend="inductor", device="cpu")
    message = str(info.value)
    assert message.startswith(f"{cache}: ") and problem in message and "TRTDET_CACHE_DIR" in message
    assert "\n" not in message


def test_the_cli_says_it_in_one_line_and_exits_1(tmp_path):
    cache, _ = _cases(tmp_path)["file"]
    run = subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", "run", "--model", "yolo", "--backend", "inductor", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TRTDET_CACHE_DIR": str(cache)},
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: {cache}: the trtdet cache cannot be used (it or a folder above it is a file, not a folder); "
        "compiled packages are kept there: make it a writable folder or point TRTDET_CACHE_DIR at one"
    ]
