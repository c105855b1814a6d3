"""``trtdet build``: an ONNX model to a self-describing TensorRT engine file (cached)."""

from __future__ import annotations

from pathlib import Path

import click

from trtdet.cli.common import handle_errors


@click.command("build")
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option("--model", "-m", "model", required=True, help="Model name (see `trtdet models`).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=1, show_default=True, help="Largest batch size."
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default=None, help="Engine file [default: F.engine]."
)
@click.option(
    "--dcn",
    type=click.Choice(["auto", "builtin", "plugin", "decomposed"]),
    default="auto",
    show_default=True,
    help="Deformable-convolution lowering: TensorRT's own plugin, the model plugin's, or standard ops.",
)
@click.option(
    "--trt",
    "trt_flavour",
    type=click.Choice(["auto", "tensorrt", "rtx"]),
    default="auto",
    show_default=True,
    help="NVIDIA TensorRT or TensorRT-RTX.",
)
@click.option("--no-cache", is_flag=True, help="Build even when the engine cache has this engine.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def build_command(onnx_file, model, precision, max_batch, output, dcn, trt_flavour, no_cache, quiet):
    """Build a TensorRT engine from ONNX_FILE for model NAME (FP16 converts the ONNX; builds are cached)."""
    from trtdet.engines.tensorrt.builder import BuildOptions, build_engine
    from trtdet.plugins import get_model

    spec = get_model(model).spec
    source = Path(onnx_file)
    target = Path(output) if output else source.with_suffix(".engine")
    options = BuildOptions(
        precision=precision, max_batch=max_batch, dcn=dcn, trt=None if trt_flavour == "auto" else trt_flavour
    )

    def report(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    result = build_engine(source, spec, options, output=target, use_cache=not no_cache, report=report)
    meta = result.metadata
    how = "from the engine cache" if result.cached else f"built in {result.seconds:.1f} s"
    flavour = "TensorRT-RTX" if meta.trt_flavour == "rtx" else "TensorRT"
    dcn_note = f", dcn {meta.dcn}" if meta.dcn else ""
    click.echo(
        f"wrote {result.path} ({how}; {flavour} {meta.trt_version}, {meta.precision}, "
        f"batch 1..{meta.max_batch}, compute capability {meta.compute_capability}{dcn_note})"
    )
