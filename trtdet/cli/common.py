"""Options and error handling shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from trtdet.errors import ModelError, TrtdetError, UsageError
from trtdet.options import DetectorOptions, parse_build_options

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_USAGE, EXIT_INPUTS_FAILED = 0, 1, 2


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(function: F) -> F:
    """Turn trtdet's one-line errors into ``error: ...`` and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (UsageError, ModelError, TrtdetError) as exc:
            fail(str(exc), EXIT_USAGE)

    return wrapper  # type: ignore[return-value]


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
        click.option("--conf", type=float, default=None, help="Score threshold (default: the model's)."),
        click.option("--iou", type=float, default=None, help="NMS IoU threshold (default: the model's)."),
        click.option("--input-size", nargs=2, type=int, default=None, metavar="H W", help="Network input size."),
        click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                     help="Inference precision on GPU backends."),
        click.option("--cuda-graphs", is_flag=True, default=False,
                     help="Capture the torch backend's network in CUDA graphs (static shapes; falls back to eager)."),
    ]
    for option in reversed(options):
        function = option(function)
    return build_option_flag(function)


#: The parameters ``model_options`` adds, besides ``model``.
MODEL_OPTION_NAMES = (
    "weights", "onnx_path", "engine_path", "backend", "device", "conf", "iou", "input_size", "precision",
    "cuda_graphs", "build_option",
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
        cuda_graphs=bool(given.get("cuda_graphs", False)),
        build_options=parse_build_options(given.get("build_option") or ()),
        **fields,
    )


def load_detector(model: str, options: DetectorOptions):  # noqa: ANN201 - a trtdet.pipeline.Detector
    """``trtdet.load`` of ``model`` with the options the CLI gathered."""
    from trtdet.api import load_detector as load

    return load(model, options)
