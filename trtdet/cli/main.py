"""The ``trtdet`` console script."""

from __future__ import annotations

import importlib

import click

from trtdet.cli.common import TrtdetGroup
from trtdet.version import __version__

#: (module, attribute) of each command; a command whose module is missing is left out.
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


@click.group(cls=TrtdetGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    cli()


if __name__ == "__main__":
    main()
