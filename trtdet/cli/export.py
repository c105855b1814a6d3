"""``trtdet export``: checkpoints (or legacy ONNX layouts) to the ONNX the engines load."""

from __future__ import annotations

from pathlib import Path

import click

from trtdet.cli.common import handle_errors, input_size_option
from trtdet.errors import UsageError


@click.command("export", short_help="Export a checkpoint (or a legacy ONNX) to standard ONNX.")
@click.option("--model", "-m", "model", required=True, help="Model name (see `trtdet models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint to export.")
@click.option("--from-legacy", "legacy", type=click.Path(dir_okay=False), help="Third-party ONNX to rewrite instead.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@input_size_option
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@handle_errors
def export_command(model, weights, legacy, output, input_size, dynamic_batch):
    """Export a checkpoint to ONNX, or rewrite a legacy ONNX (e.g. DCNv2 `Plugin` ops) to the standard form."""
    from trtdet.plugins import get_model

    spec = get_model(model).spec
    if (weights is None) == (legacy is None):
        raise UsageError("give exactly one of --weights or --from-legacy")
    output_path = Path(output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if legacy is not None:
        if spec.onnx_converter is None:
            raise UsageError(f"model {model!r} has no legacy ONNX converter")
        result = spec.onnx_converter(Path(legacy), output_path)
    else:
        if spec.exporter is None:
            raise UsageError(f"model {model!r} has no checkpoint exporter")
        size = input_size or spec.input_size
        result = spec.exporter(Path(weights), output_path, input_size=size, dynamic_batch=dynamic_batch)
    click.echo(f"wrote {result}")
