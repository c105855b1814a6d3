"""Options and error handling shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from trtdet.errors import ModelError, TrtdetError, UsageError

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


def model_options(function: F) -> F:
    """``--model`` plus the model-file, backend, device and threshold options."""
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
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--conf", type=float, default=None, help="Score threshold (default: the model's)."),
        click.option("--input-size", nargs=2, type=int, default=None, metavar="H W", help="Network input size."),
        click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                     help="Inference precision on GPU backends."),
        click.option("--cuda-graphs", is_flag=True, default=False,
                     help="Capture the torch backend's network in CUDA graphs (static shapes; falls back to eager)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def load_detector(model: str, weights, onnx_path, engine_path, backend, device, conf, input_size, batch: int = 1,
                  precision: str = "fp32", cuda_graphs: bool = False):
    """``trtdet.load`` with the CLI's option names."""
    from trtdet.api import load

    return load(
        model,
        weights=weights,
        onnx=onnx_path,
        engine=engine_path,
        backend=backend,
        device=device,
        conf=conf,
        batch=batch,
        input_size=tuple(input_size) if input_size else None,
        precision=precision,
        cuda_graphs=cuda_graphs,
    )
