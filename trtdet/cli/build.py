"""``trtdet build``: a model file to a cached artifact (a TensorRT engine, an AOTInductor package) through the backend's ``build``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trtdet.cli.common import build_option_flag, handle_errors, renamed_flag, take_renamed
from trtdet.errors import TrtdetError, UsageError

if TYPE_CHECKING:
    from trtdet.contracts.engine import EngineBackend
    from trtdet.options import DetectorOptions

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
    default="tensorrt",
    show_default=True,
    metavar="NAME",
    help="tensorrt: a TensorRT engine; inductor: an AOTInductor package (.pt2, compiled torch, no TensorRT needed); "
         "or the name of an installed plugin's backend that builds.",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Build from a checkpoint instead (inductor).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
              help="GPU the engine is built on (its model keys the cache), or cpu for an inductor CPU package; "
                   "auto (as for trtdet run): the GPU when one is visible, else the CPU (TensorRT: always the GPU).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True,
    help="Largest number of images per engine call the engine accepts.",
)
@renamed_flag("--max-batch", "batch", type=click.IntRange(min=1))
@click.option(
    "--input-size", "input_size", type=click.IntRange(min=1), nargs=2, default=None, metavar="H W",
    help="Network input height and width [default: the model's]. For the rect letterbox's shape buckets "
         "(e.g. 384 640 for 16:9 frames at 640), so a deployment never compiles at run time.",
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
def build_command(onnx_file, model, backend, weights, device, precision, batch, renamed_batch, input_size, output, build_option,
                  trt_flavour, no_cache, quiet, **step_flags):
    """Build an engine for model NAME from ONNX_FILE (or --weights): TensorRT, or an AOTInductor package.

    Builds are cached: the same source and options later load from the cache.
    """
    from trtdet.context import RunContext
    from trtdet.contracts.engine import BuildRequest, ModelFile, build_with
    from trtdet.model_file import check_onnx_fits
    from trtdet.plugins import get_model

    batch = take_renamed(batch, renamed_batch, param="batch", old="--max-batch", new="--batch")
    spec = get_model(model).spec
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=(int(input_size[0]), int(input_size[1])))
    engine_backend = _builder(backend)
    device = _device(device, engine_backend, quiet)
    if (onnx_file is None) == (weights is None):
        raise UsageError("give ONNX_FILE or --weights CKPT (one of them)")
    if onnx_file is not None:
        check_onnx_fits(spec, Path(onnx_file))  # the head check `trtdet run` makes, before a long build
    source = ModelFile(Path(onnx_file or weights), "weights" if weights else "onnx")
    context = RunContext.from_options(_build_options(device, precision, batch, build_option, step_flags))
    request = BuildRequest(
        output=Path(output) if output else source.path.with_suffix(engine_backend.artifact_suffix),
        use_cache=not no_cache,
        runtime=None if trt_flavour == "auto" else trt_flavour,
        report=None if quiet else _report,
    )
    artifact = build_with(engine_backend, source, spec, context, request)
    click.echo(f"wrote {artifact.path} ({artifact.describe()})")


def _device(device: str, engine_backend: EngineBackend, quiet: bool) -> str:
    """The device the build is for: ``auto`` as ``trtdet run`` resolves it, for this backend
    (``auto_device_for``); one line saying so when that is the CPU."""
    from trtdet.contracts.engine import auto_device_for
    from trtdet.devices import AUTO, normalize_device

    if device.strip().lower() != AUTO:
        return normalize_device(device)
    chosen = auto_device_for(engine_backend)
    if chosen == "cpu" and not quiet:
        click.echo("device auto: no CUDA GPU is visible, so this builds for the cpu (--device cuda builds for a GPU)",
                   err=True)
    return chosen


def _builder(name: str) -> EngineBackend:
    """The registered engine backend called ``name``."""
    from trtdet.plugins import list_engine_backends

    backends = list_engine_backends()
    if name not in backends:
        raise UsageError(f"unknown or uninstalled backend {name!r} (installed: {', '.join(sorted(backends))})")
    return backends[name]


def _build_options(device: str, precision: str, batch: int, pairs: tuple[str, ...], step_flags: dict) -> DetectorOptions:
    """The detector options a build uses: ``--build-option NAME=VALUE`` pairs, then the steps' own flags."""
    from trtdet.options import DetectorOptions, parse_build_options

    build_options = parse_build_options(pairs)
    for key, value in step_flags.items():
        if value is not None:
            build_options[key.removeprefix(STEP_FLAG_PREFIX)] = value
    return DetectorOptions(device=device, precision=precision, batch=batch, build_options=build_options)


def _report(message: str) -> None:
    click.echo(message, err=True)
