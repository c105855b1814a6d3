"""Options and error handling shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trtdet.errors import DeprecatedFlagWarning, ModelError, TrtdetError, TrtdetWarning, UsageError
from trtdet.options import (
    NO_FLAG,
    DetectorOptions,
    OptionSpec,
    option_defaults,
    option_specs,
    parse_build_options,
)

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
    "onnx": "pip install 'trtdet[onnx]' (building engines, exporting and the torch backends' ONNX import use it)",
}


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _warning_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` printing trtdet's own warnings (``TrtdetWarning``: a damaged input, a plugin
    left out) as one ``warning:`` line, without Python's file:line and source line."""

    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, TrtdetWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def install_warning_lines() -> None:
    """Route trtdet's own warnings to one ``warning:`` line each (idempotent)."""
    if not getattr(warnings.showwarning, "trtdet_lines", False):
        warnings.showwarning = _warning_lines(warnings.showwarning)
        warnings.showwarning.trtdet_lines = True  # type: ignore[attr-defined]


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
                install_warning_lines()
                return function(*args, **kwargs)
        except (UsageError, ModelError, TrtdetError) as exc:
            fail(str(exc), EXIT_USAGE)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in INSTALL_HINTS:
                raise
            fail(f"this needs the Python package {top!r}, which is not installed: {INSTALL_HINTS[top]}", EXIT_USAGE)

    return wrapper  # type: ignore[return-value]


def renamed_flag(old: str, param: str, **kwargs: Any) -> Callable[[F], F]:
    """A hidden flag ``old`` kept after its rename: its value arrives as ``renamed_<param>`` (None when
    not given), for ``take_renamed`` to use in place of ``param``'s."""
    return click.option(old, f"renamed_{param}", default=None, hidden=True, **kwargs)


def take_renamed(value: Any, old_value: Any, *, param: str, old: str, new: str) -> Any:
    """``param``'s value, or the old flag's with one ``warning:`` line saying it was renamed.

    Both flags given is a ``UsageError`` (they are one setting).
    """
    if old_value is None:
        return value
    if click.get_current_context().get_parameter_source(param) is click.core.ParameterSource.COMMANDLINE:
        raise UsageError(f"give {new} or {old} (its old name), not both")
    warnings.warn(f"{old} is deprecated: use {new} (same meaning)", DeprecatedFlagWarning, stacklevel=2)
    return old_value


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


#: Click behaviour beyond what an option's declaration says (how its text is parsed on the command line).
_CLICK_EXTRAS: dict[str, dict[str, Any]] = {
    "classes": {"multiple": True, "callback": _classes},
    "input_size": {"cls": SizeOption, "callback": _input_size},
}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _click_option(name: str, spec: OptionSpec, default: Any) -> Callable[[F], F]:
    """The click flag of one ``DetectorOptions`` field, from its declaration."""
    flag = spec.flag or "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {"help": spec.help, **_CLICK_EXTRAS.get(name, {})}
    if spec.kind is bool:
        kwargs.update(default=default, **({"is_flag": True} if "/" not in flag else {}))
    else:
        kwargs["default"] = default
        if spec.choices is not None:
            kwargs["type"] = click.Choice(list(spec.choices))
        elif spec.kind is Path:
            kwargs["type"] = click.Path(dir_okay=False)
        elif spec.kind is float and spec.minimum is not None:
            kwargs["type"] = click.FloatRange(_number(spec.minimum), None if spec.maximum is None else _number(spec.maximum))
        elif spec.kind is int and spec.minimum is not None:
            kwargs["type"] = click.IntRange(min=_number(spec.minimum))
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.show_default:
        kwargs["show_default"] = True
    names = [flag] if not spec.param else [flag, spec.param]
    return click.option(*names, **kwargs)


def model_options(function: F) -> F:
    """``--model`` plus one flag per ``DetectorOptions`` field that has one (declared in ``trtdet.options``),
    then ``--build-option``."""
    defaults = option_defaults()
    options = [click.option("--model", "-m", "model", required=True, help="Model name (see `trtdet models`).")]
    options += [_click_option(name, spec, defaults[name]) for name, spec in option_specs().items() if spec.flag != NO_FLAG]
    for option in reversed(options):
        function = option(function)
    return build_option_flag(function)


#: The parameters ``model_options`` adds, besides ``model``.
MODEL_OPTION_NAMES = (
    *(spec.param or name for name, spec in option_specs().items() if spec.flag != NO_FLAG),
    "build_option",
)


def detector_options(given: dict[str, Any], **fields: Any) -> DetectorOptions:
    """The ``DetectorOptions`` of the ``model_options`` flags in ``given`` (plus ``fields``, e.g. batch)."""
    defaults = option_defaults()
    values: dict[str, Any] = {}
    for name, spec in option_specs().items():
        if spec.flag == NO_FLAG:
            continue
        value = given.get(spec.param or name, defaults[name])
        if name == "input_size":
            value = tuple(value) if value else None
        elif name == "agnostic_nms":
            value = bool(value)
        values[name] = value
    return DetectorOptions(**values, build_options=parse_build_options(given.get("build_option") or ()), **fields)


def load_detector(model: str, options: DetectorOptions):  # noqa: ANN201 - a trtdet.pipeline.Detector
    """``trtdet.load`` of ``model`` with the options the CLI gathered."""
    from trtdet.api import load_detector as load

    return load(model, options)
