"""The fresh-process load check: started early, handed the package later, one line on failure."""

from __future__ import annotations

import time

import pytest

from trtdet.engines.inductor.load_check import FreshProcessCheck
from trtdet.errors import ModelError


def test_a_file_that_is_no_package_fails_with_one_line_naming_it(tmp_path):
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"not a zip archive")
    with FreshProcessCheck([], (32, 32), "float32", "cpu") as check, pytest.raises(ModelError) as info:
        check.run(bogus)
    message = str(info.value)
    assert str(bogus) in message and "fails to load in a fresh process" in message and "\n" not in message


def test_a_check_never_given_a_package_ends_its_child(tmp_path):
    started = time.perf_counter()
    with FreshProcessCheck([], (32, 32), "float32", "cpu") as check:
        process = check._process
    assert process.returncode is not None  # killed (or done), not left waiting on stdin
    assert time.perf_counter() - started < 60


def test_a_library_that_does_not_import_is_reported(tmp_path):
    with FreshProcessCheck(["no_such_module_xyz"], (32, 32), "float32", "cpu") as check, pytest.raises(ModelError) as info:
        check.run(tmp_path / "x.pt2")
    assert "no_such_module_xyz" in str(info.value)
