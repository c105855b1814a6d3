"""Options and error handling shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from trtdet.errors import CorruptImageWarning, ModelError, TrtdetError, UsageError
from trtdet.options import DetectorOptions, parse_build_options

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_USAGE, EXIT_INPUTS_FAILED = 0, 1, 2


#: Optional packages a command may need, with the install command that brings each.
INSTALL_HINTS = {
    "torch": "pip install torch (or pip install 'trtdet[torch]'; on a GPU first the torch build for your CUDA)",
    "torchvision": "pip install torchvision",
    "numba_cuda": "pip install 'trtdet[cuda]'",
    "supervision": "pip install 'trtdet[track]'",
    "pycocotools": "pip install 'trtdet[val]'",
    "tensorrt": "pip install 'trtdet[tensorrt]'",
    "tensorrt_rtx": "pip install 'trtdet[rtx]'",
    "PIL": "pip install pillow",
}


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _warning_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` printing a damaged input (``CorruptImageWarning``) as one ``warning:`` line."""

    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, CorruptImageWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def handle_errors(function: F) -> F:
    """Turn trtdet's one-line errors into ``error: ...`` and exit code 1.

    A missing optional package (torch for ``--weights``, supervision for ``--track``, ...)
    is one line with the command that installs it, not a traceback. A damaged input read
    through the API's path (``val``, ``bench``) is one ``warning: ...`` line.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_lines(warnings.showwarning)
                return function(*args, **kwargs)
        except (UsageError, ModelError, TrtdetError) as exc:
            fail(str(exc), EXIT_USAGE)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in INSTALL_HINTS:
                raise
            fail(f"this needs the Python package {top!r}, which is not installed: {INSTALL_HINTS[top]}", EXIT_USAGE)

    return wrapper  # type: ignore[return-value]


class TrtdetGroup(click.Group):
    """The command group: click's usage errors (unknown option, missing ``--model``, a value
    out of range) exit with 1 as every other usage error does; 2 means some inputs failed."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE
            raise


class SizeOption(click.Option):
    """An option taking one or two integers: ``--input-size 640`` (a square) or ``--input-size 480 640``.

    Click options have a fixed number of values, so the parser's handler for this option
    also takes the next argument when it is a number.
    """

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            parsed = parser._long_opt.get(name) or parser._short_opt.get(name)
            if parsed is None:
                continue
            original = parsed.process

            def process(value: Any, state: Any, original: Any = original) -> None:
                values = [value]
                if state.rargs and state.rargs[0].isdigit():
                    values.append(state.rargs.pop(0))
                original(" ".join(str(v) for v in values), state)

            parsed.process = process


def _input_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    from trtdet.options import parse_input_size

    try:
        return parse_input_size(value)
    except UsageError:
        raise click.BadParameter(f"expected H W or one size for a square, each >= 1, got {value!r}") from None


def input_size_option(function: F) -> F:
    """``--input-size H W`` or ``--input-size S`` (square)."""
    return click.option(
        "--input-size", cls=SizeOption, default=None, metavar="H [W]", callback=_input_size,
        help="Network input size: H W, or one size for a square (default: the model's).",
    )(function)


def _classes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str | int, ...] | None:
    if not value:
        return None
    from trtdet.options import parse_classes

    try:
        return parse_classes(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def build_option_flag(function: F) -> F:
    """The repeatable ``--build-option NAME=VALUE``: a choice for a plugin's engine build step."""
    return click.option(
        "--build-option",
        "build_option",
        multiple=True,
        metavar="NAME=VALUE",
        help="Choice for a plugin's engine build step (repeatable; `trtdet build --help` lists the installed steps).",
    )(function)


def model_options(function: F) -> F:
    """``--model`` plus the model-file, backend, device, threshold, precision and build options."""
    options = [
        click.option("--model", "-m", "model", required=True, help="Model name (see `trtdet models`)."),
        click.option("--weights", type=click.Path(dir_okay=False), help="Framework checkpoint (exported to ONNX, cached)."),
        click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="ONNX model file."),
        click.option("--engine", "engine_path", type=click.Path(dir_okay=False), help="TensorRT engine file."),
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            help="Engine backend: auto (the fastest available), tensorrt, onnxruntime, torch, or a plugin's.",
        ),
        click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N",
                     help="Where to run: the CPU, the current GPU, or GPU N."),
        click.option("--conf", type=click.FloatRange(0, 1), default=None, help="Score threshold in [0, 1] (default: the model's)."),
        click.option("--iou", type=click.FloatRange(0, 1), default=None,
                     help="NMS IoU threshold in [0, 1] (default: the model's; adds NMS to models without it)."),
        click.option("--classes", multiple=True, callback=_classes, metavar="NAMES|IDS",
                     help="Keep only these classes: names or ids, comma-separated or repeated (e.g. person,car or 0)."),
        click.option("--max-det", type=click.IntRange(min=1), default=None,
                     help="At most this many detections per image (default: the model's)."),
        click.option("--agnostic-nms", is_flag=True, default=False,
                     help="NMS across classes: a box suppresses overlapping boxes of any class (models with NMS)."),
        input_size_option,
        click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                     help="Inference precision on GPU backends."),
        click.option("--cuda-graphs/--no-cuda-graphs", default=None,
                     help="Replay the network in CUDA graphs (default: on for inductor packages, off for eager torch)."),
        click.option("--letterbox", type=click.Choice(["rect", "square", "warp", "stretch", "ultralytics"]), default=None,
                     help="Preprocess geometry (default: the model's; yolo: rect when the model file allows any "
                          "height and width, else square; rtdetr: stretch; centernet: warp; ultralytics = square)."),
    ]
    for option in reversed(options):
        function = option(function)
    return build_option_flag(function)


#: The parameters ``model_options`` adds, besides ``model``.
MODEL_OPTION_NAMES = (
    "weights", "onnx_path", "engine_path", "backend", "device", "conf", "iou", "input_size", "precision",
    "cuda_graphs", "letterbox", "build_option", "classes", "max_det", "agnostic_nms",
)


def detector_options(given: dict[str, Any], **fields: Any) -> DetectorOptions:
    """The ``DetectorOptions`` of the ``model_options`` flags in ``given`` (plus ``fields``, e.g. batch)."""
    return DetectorOptions(
        weights=given.get("weights"),
        onnx=given.get("onnx_path"),
        engine=given.get("engine_path"),
        backend=given.get("backend", "auto"),
        device=given.get("device", "cpu"),
        conf=given.get("conf"),
        iou=given.get("iou"),
        input_size=tuple(given["input_size"]) if given.get("input_size") else None,
        precision=given.get("precision", "fp32"),
        cuda_graphs=given.get("cuda_graphs"),
        classes=given.get("classes"),
        max_det=given.get("max_det"),
        agnostic_nms=bool(given.get("agnostic_nms", False)),
        letterbox=given.get("letterbox"),
        build_options=parse_build_options(given.get("build_option") or ()),
        **fields,
    )


def load_detector(model: str, options: DetectorOptions):  # noqa: ANN201 - a trtdet.pipeline.Detector
    """``trtdet.load`` of ``model`` with the options the CLI gathered."""
    from trtdet.api import load_detector as load

    return load(model, options)
