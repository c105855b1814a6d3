"""The ``trtdet`` console script."""

from __future__ import annotations

import importlib

import click

from trtdet.cli.common import TrtdetGroup, install_warning_lines
from trtdet.version import __version__

#: (module, attribute) of each built-in command; a command whose module is missing is left out.
#: Plugins add theirs through the ``trtdet_register_commands`` hook.
COMMANDS = (
    ("trtdet.cli.info", "models_command"),
    ("trtdet.cli.info", "plugins_command"),
    ("trtdet.cli.run", "run_command"),
    ("trtdet.cli.export", "export_command"),
    ("trtdet.cli.build", "build_command"),
    ("trtdet.cli.bench", "bench_command"),
    ("trtdet.cli.val", "val_command"),
    ("trtdet.cli.batch", "batch_command"),
    ("trtdet.cli.serve", "serve_command"),
)


class PluginCommands(TrtdetGroup):
    """The built-in commands plus those plugins register (``trtdet_register_commands``), looked up lazily."""

    def _plugin_commands(self) -> dict[str, click.Command]:
        import warnings

        from trtdet.plugins import list_commands

        install_warning_lines()  # loading plugins may leave one out: one warning line, not file:line
        commands = list_commands()
        for name in sorted(set(commands) & set(self.commands)):  # a built-in is never replaced
            warnings.warn(f"plugin command {name!r} is left out: a built-in trtdet command has that name", stacklevel=2)
            del commands[name]
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self._plugin_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self.commands.get(name) or self._plugin_commands().get(name)


@click.group(cls=PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trtdet")
def cli() -> None:
    """trtdet: trained detectors as fast inference pipelines (ONNX -> TensorRT -> GPU pre/post-processing)."""


for module_name, attribute in COMMANDS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        continue
    cli.add_command(getattr(module, attribute))


def main() -> None:
    install_warning_lines()
    cli()


if __name__ == "__main__":
    main()
