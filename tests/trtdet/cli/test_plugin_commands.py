"""Plugins add ``trtdet`` subcommands through ``trtdet_register_commands``."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from trtdet import hookimpl
from trtdet.cli.main import cli
from trtdet.plugins import register_plugin, unregister_plugin


@click.command("hello-test")
@click.option("--name", default="world")
def hello(name: str) -> None:
    """Say hello (a plugin's command)."""
    click.echo(f"hello {name}")


@click.command("run")
def fake_run() -> None:
    """A plugin command that would shadow the built-in run."""


class CommandPlugin:
    @hookimpl
    def trtdet_register_commands(self, register):
        register(hello)
        register(fake_run)


def test_a_plugin_command_runs_and_is_listed_but_never_replaces_a_built_in() -> None:
    register_plugin(CommandPlugin(), "command-test-plugin")
    try:
        with pytest.warns(UserWarning, match="plugin command 'run' is left out: a built-in trtdet command has that name"):
            result = CliRunner().invoke(cli, ["hello-test", "--name", "trtdet"])
        assert result.exit_code == 0 and result.output == "hello trtdet\n"
        with pytest.warns(UserWarning):
            listing = CliRunner().invoke(cli, ["--help"])
        assert "hello-test" in listing.output and "Say hello" in listing.output
        assert cli.get_command(None, "run").name == "run" and cli.get_command(None, "run") is not fake_run
    finally:
        unregister_plugin("command-test-plugin")
    assert "hello-test" not in CliRunner().invoke(cli, ["--help"]).output
