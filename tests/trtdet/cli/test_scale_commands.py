"""``trtdet batch`` / ``trtdet serve`` without the ``[ray]`` extra: one line saying how to install it."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli


@pytest.mark.parametrize("command", [["batch", "-s", "x.jpg", "-o", "out"], ["serve"]])
def test_without_ray_the_commands_say_how_to_install_it(monkeypatch, command, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [command[0], "-m", "yolo", *command[1:]])
    assert result.exit_code == 1
    assert result.output.strip() == "error: this command runs on Ray, which is not installed: pip install 'trtdet[ray]'"
