"""``trtdet build``: an ONNX model to a self-describing TensorRT engine file (cached)."""

from __future__ import annotations

from pathlib import Path

import click

from trtdet.cli.common import build_option_flag, handle_errors
from trtdet.errors import TrtdetError, UsageError

#: Parameter-name prefix of the ``--NAME VALUE`` flags generated for installed build steps.
STEP_FLAG_PREFIX = "build_step_"


class BuildStepCommand(click.Command):
    """A command that also takes ``--NAME VALUE`` for every installed build step.

    The flags are made from the steps plugins register (``trtdet_build_steps``) when the
    command parses or shows help, so ``trtdet build --NAME VALUE`` is the same as
    ``--build-option NAME=VALUE`` without the core knowing any step. A step whose flag
    would shadow one of the command's own options gets none (``--build-option`` still works).
    """

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        taken = {opt for param in self.params for opt in getattr(param, "opts", ())}
        params = [*self.params, *(option for option in _step_flags() if option.opts[0] not in taken)]
        help_option = self.get_help_option(ctx)
        return [*params, help_option] if help_option is not None else params


def _step_flags() -> list[click.Option]:
    from trtdet.plugins import list_build_steps

    try:
        steps = list_build_steps()
    except TrtdetError:  # a broken plugin setup is reported when the command runs
        return []
    return [
        click.Option(
            [f"--{name.replace('_', '-')}", f"{STEP_FLAG_PREFIX}{name}"],
            type=click.Choice(list(registered.step.choices)),
            default=None,
            help=f"{registered.step.help} [default: {registered.step.default}; plugin {registered.plugin}; "
            f"same as --build-option {name}=VALUE]",
        )
        for name, registered in sorted(steps.items())
    ]


@click.command("build", cls=BuildStepCommand, short_help="Build a TensorRT engine or an AOTInductor package (cached).")
@click.argument("onnx_file", type=click.Path(dir_okay=False), required=False)
@click.option("--model", "-m", "model", required=True, help="Model name (see `trtdet models`).")
@click.option(
    "--backend",
    type=click.Choice(["tensorrt", "inductor"]),
    default="tensorrt",
    show_default=True,
    help="tensorrt: a TensorRT engine; inductor: an AOTInductor package (.pt2, compiled torch, no TensorRT needed).",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Build from a checkpoint instead (inductor).")
@click.option("--device", default="cuda", show_default=True, metavar="cuda|cuda:N|cpu",
              help="GPU the engine is built on (its model keys the cache), or cpu for an inductor CPU package.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=1, show_default=True, help="Largest batch size."
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default=None,
    help="Engine file [default: F.engine, or F.pt2 with --backend inductor].",
)
@build_option_flag
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
def build_command(onnx_file, model, backend, weights, device, precision, max_batch, output, build_option, trt_flavour,
                  no_cache, quiet, **step_flags):
    """Build an engine for model NAME from ONNX_FILE (or --weights): TensorRT, or an AOTInductor package.

    Builds are cached: the same source and options later load from the cache.
    """
    from trtdet.devices import check_present, normalize_device, on_device
    from trtdet.engines.tensorrt.builder import BuildConfig, build_engine
    from trtdet.model_file import check_onnx_fits
    from trtdet.options import parse_build_options
    from trtdet.plugins import get_model

    spec = get_model(model).spec
    device = normalize_device(device)
    if (onnx_file is None) == (weights is None):
        raise UsageError("give ONNX_FILE or --weights CKPT (one of them)")
    if onnx_file is not None:
        check_onnx_fits(spec, Path(onnx_file))  # the head check `trtdet run` makes, before a long build
    if backend == "inductor":
        _build_package(spec, Path(onnx_file or weights), "weights" if weights else "onnx",
                       (device, precision, max_batch, output, quiet))
        return
    if weights is not None:
        raise UsageError("--weights builds need --backend inductor; for TensorRT export to ONNX first (trtdet export)")
    source = Path(onnx_file)
    target = Path(output) if output else source.with_suffix(".engine")
    build_options = parse_build_options(build_option)
    for key, value in step_flags.items():
        if value is not None:
            build_options[key.removeprefix(STEP_FLAG_PREFIX)] = value
    config = BuildConfig(
        precision=precision,
        max_batch=max_batch,
        build_options=build_options,
        trt=None if trt_flavour == "auto" else trt_flavour,
    )

    def report(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    if device == "cpu":
        raise UsageError("--device cpu: TensorRT engines are built on a GPU (cpu packages: --backend inductor)")
    check_present(device)
    with on_device(device):
        result = build_engine(source, spec, config, output=target, use_cache=not no_cache, report=report)
    meta = result.metadata
    how = "from the engine cache" if result.cached else f"built in {result.seconds:.1f} s"
    flavour = "TensorRT-RTX" if meta.runtime == "rtx" else "TensorRT"
    notes = "".join(f", {name} {value}" for name, value in meta.build_options.items())
    click.echo(
        f"wrote {result.path} ({how}; {flavour} {meta.runtime_version}, {meta.precision}, "
        f"batch 1..{meta.max_batch}, compute capability {meta.compute_capability}{notes})"
    )


def _build_package(spec, source: Path, kind: str, settings: tuple) -> None:
    """``trtdet build --backend inductor``: compile (or fetch from the cache) and copy to the output."""
    from trtdet.devices import check_present, is_cuda, on_device
    from trtdet.engines.artifact_cache import copy_atomically
    from trtdet.engines.base import ModelFile
    from trtdet.engines.inductor.build import build_package
    from trtdet.model_file import _existing
    from trtdet.options import DetectorOptions

    device, precision, max_batch, output, quiet = settings
    if is_cuda(device):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: PyTorch sees no CUDA GPU (use --device cpu for a CPU package)")
        check_present(device)
    options = DetectorOptions(device=device, precision=precision, batch=max_batch)

    def report(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    with on_device(device):
        result = build_package(ModelFile(_existing(source), kind), spec, options, report=report)
    target = Path(output) if output else source.with_suffix(".pt2")
    copy_atomically(result.path, target)
    meta = result.metadata
    how = "from the package cache" if result.cached else f"built in {result.seconds:.1f} s"
    where = meta.gpu_name if is_cuda(device) else "cpu"
    click.echo(
        f"wrote {target} ({how}; AOTInductor, torch {meta.runtime_version}, {meta.precision}, "
        f"batch 1..{meta.max_batch}, {where})"
    )
