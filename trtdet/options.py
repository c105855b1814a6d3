"""``DetectorOptions``: how to load and run a detector, one frozen object from the CLI to the backend.

The CLI builds it from its flags, ``trtdet.load`` from its keyword arguments; the engine
backend receives it unchanged, beside the ``RunContext`` resolved from it
(``EngineBackend.load(model_file, spec, options, context)``), and inside that context
(``context.options``: what ``EngineBackend.build(source, spec, context)`` reads beyond the
device, precision and batch). Values are checked when it is created, each bad one a one-line
``UsageError``; ``device="auto"`` is resolved then.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trtdet.devices import AUTO, resolve_device
from trtdet.errors import UsageError
from trtdet.geometry import LETTERBOXES


@dataclass(frozen=True)
class OptionSpec:
    """How one ``DetectorOptions`` field is offered: its CLI flag, help, and the checks of its value.

    Declared once, next to the field (``_option``); the click flags of ``run``/``bench``/``val``/
    ``batch``/``serve`` (``trtdet.cli.common.model_options``), ``trtdet.load``'s keywords and the
    values' checks all read it. ``choices`` / ``minimum`` / ``maximum`` bound the value;
    ``parse`` normalises it (one-line ``UsageError`` when it cannot).
    """

    help: str
    #: The CLI flag: "" gives ``--name-with-dashes``; ``NO_FLAG`` means the shared flags have
    #: none (``batch``: each command declares its own ``--batch`` default; ``build_options``:
    #: the repeatable ``--build-option NAME=VALUE``).
    flag: str = ""
    #: The click parameter name ("" -> the field name).
    param: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    kind: type = str
    show_default: bool = False
    parse: Any = None
    #: How an error states the accepted values (default: "one of a, b, c" from ``choices``).
    expected: str | None = None


NO_FLAG = "-"


def _option(default: Any = None, **spec: Any) -> Any:
    """A ``DetectorOptions`` field with its ``OptionSpec`` (``default_factory=`` for mutable defaults)."""
    factory = spec.pop("default_factory", None)
    metadata = {"option": OptionSpec(**spec)}
    if factory is not None:
        return field(default_factory=factory, hash=False, metadata=metadata)
    return field(default=default, metadata=metadata)


#: The precisions a detector runs in (one list, shared with ``trtdet.context.RunContext``).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")


def _parse_device(value: Any) -> str:
    return resolve_device(value)


@dataclass(frozen=True)
class DetectorOptions:
    """Everything a detector is loaded with, besides the model name: each option declared once here.

    Each field carries its ``OptionSpec`` (help, flag, range): ``trtdet.load`` takes the fields
    as keywords, the CLI derives its flags from them, and ``__post_init__`` checks every value
    from the same declaration. ``--help`` and ``help(trtdet.load)`` show the same texts.
    """

    weights: str | Path | None = _option(help="Framework checkpoint (exported to ONNX, cached).", kind=Path)
    onnx: str | Path | None = _option(help="ONNX model file.", param="onnx_path", kind=Path)
    engine: str | Path | None = _option(help="TensorRT engine file.", param="engine_path", kind=Path)
    backend: str = _option(
        "auto", show_default=True,
        help="Engine backend: auto (the fastest available), tensorrt, onnxruntime, torch, or a plugin's.",
    )
    device: str = _option(
        AUTO, show_default=True, metavar="auto|cpu|cuda|cuda:N", parse=_parse_device,
        help="Where to run: auto (the GPU when one is visible, else the CPU), the CPU, the current GPU, or GPU N.",
    )
    conf: float | None = _option(
        kind=float, minimum=0.0, maximum=1.0, help="Score threshold in [0, 1] (default: the model's)."
    )
    iou: float | None = _option(
        kind=float, minimum=0.0, maximum=1.0,
        help="NMS IoU threshold in [0, 1] (default: the model's; adds NMS to models without it).",
    )
    classes: tuple[str | int, ...] | None = _option(
        kind=tuple, metavar="NAMES|IDS", parse=lambda value: parse_classes(value),
        help="Keep only these classes: names or ids, comma-separated or repeated (e.g. person,car or 0).",
    )
    max_det: int | None = _option(kind=int, minimum=1, help="At most this many detections per image (default: the model's).")
    agnostic_nms: bool = _option(
        False, kind=bool, help="NMS across classes: a box suppresses overlapping boxes of any class (models with NMS)."
    )
    input_size: tuple[int, int] | None = _option(
        kind=tuple, metavar="H [W]", parse=lambda value: parse_input_size(value),
        help="Network input size: H W, or one size for a square (default: the model's).",
    )
    precision: str = _option(
        "fp32", choices=PRECISIONS, expected="'fp32' or 'fp16'", show_default=True, help="Inference precision on GPU backends."
    )
    cuda_graphs: bool | None = _option(
        kind=bool, flag="--cuda-graphs/--no-cuda-graphs",
        help="Replay the network in CUDA graphs (default: on for inductor packages, off for eager torch).",
    )
    letterbox: str | None = _option(
        choices=LETTERBOXES,
        help="Preprocess geometry (default: the model's; yolo: rect when the model file allows any "
        "height and width, else square; rtdetr: stretch; centernet: warp; ultralytics = square).",
    )
    #: The largest batch sent to the engine. Each command gives its own ``--batch`` flag (its
    #: default differs: 1 for run, 8 for batch, several sizes for bench), so no shared flag.
    batch: int = _option(1, kind=int, minimum=1, flag=NO_FLAG, help="Images per engine call.")
    build_options: Mapping[str, str] = _option(
        default_factory=dict, kind=dict, flag=NO_FLAG, param="build_option",
        help="Choices for plugins' engine build steps (--build-option NAME=VALUE; see trtdet.contracts.build_steps).",
    )

    def __post_init__(self) -> None:
        given = [name for name in ("weights", "onnx", "engine") if getattr(self, name) is not None]
        if len(given) > 1:
            raise UsageError(f"give at most one of --weights, --onnx, --engine (got {', '.join(given)})")
        for name, spec in option_specs().items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked(name, spec, value))
        object.__setattr__(self, "build_options", {str(k): str(v) for k, v in dict(self.build_options).items()})

    def replace(self, **changes: Any) -> DetectorOptions:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def overriding(self, **values: Any) -> DetectorOptions:
        """A copy taking each of ``values`` that differs from the field's default.

        For callers that pass every option, given or not (a default then means "not given").
        A caller that knows which values were given explicitly uses ``replace`` (``trtdet.load``
        does: ``precision="fp32"`` over options made with fp16 is honoured).
        """
        defaults = {f.name: f.default for f in fields(self) if f.name != "build_options"}
        changes = {name: value for name, value in values.items() if name in defaults and value != defaults[name]}
        if values.get("build_options"):
            changes["build_options"] = {**self.build_options, **dict(values["build_options"])}
        return replace(self, **changes) if changes else self


def option_specs() -> dict[str, OptionSpec]:
    """Every option's declaration, by field name, in declaration order."""
    return {f.name: f.metadata["option"] for f in fields(DetectorOptions)}


def option_defaults() -> dict[str, Any]:
    """Every option's default, by field name."""
    return {f.name: (f.default_factory() if f.default is MISSING else f.default) for f in fields(DetectorOptions)}  # type: ignore[misc]


def _checked(name: str, spec: OptionSpec, value: Any) -> Any:
    """``value`` normalised and checked against its declaration (one-line ``UsageError``)."""
    if spec.parse is not None:
        return spec.parse(value)
    if spec.choices is not None and value not in spec.choices:
        expected = spec.expected or f"one of {', '.join(spec.choices)}"
        raise UsageError(f"{name}: expected {expected}, got {value!r}")
    if spec.kind is float:
        value = float(value)
    if spec.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise UsageError(f"{name}: expected an integer >= {spec.minimum:g}, got {value!r}")
    if spec.minimum is not None and spec.maximum is not None and not spec.minimum <= value <= spec.maximum:
        raise UsageError(f"{name}: expected a value in [{spec.minimum:g}, {spec.maximum:g}], got {value:g}")
    if spec.minimum is not None and spec.maximum is None and value < spec.minimum:
        raise UsageError(f"{name}: expected >= {spec.minimum:g}, got {value!r}")
    return value


def options_from(keywords: Mapping[str, Any], base: DetectorOptions | None = None) -> DetectorOptions:
    """``DetectorOptions`` from explicitly given keywords (``trtdet.load``'s), over ``base`` if any.

    Every keyword given is taken, even one equal to the default; an unknown name is a one-line
    ``UsageError`` with the closest known one.
    """
    specs = option_specs()
    unknown = [name for name in keywords if name not in specs]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(specs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown option {unknown[0]!r} (known: {', '.join(specs)}){hint}")
    values = dict(keywords)
    if values.get("classes") is not None and not isinstance(values["classes"], (str, int)):
        values["classes"] = tuple(values["classes"])
    if values.get("build_options") is None:
        values.pop("build_options", None)
    if base is None:
        return DetectorOptions(**values)
    if "build_options" in values:
        values["build_options"] = {**base.build_options, **dict(values["build_options"])}
    return base.replace(**values)


def parse_input_size(value: int | Iterable[int] | str) -> tuple[int, int]:
    """``640``, ``(640,)`` or ``"640"`` (a square) or ``(H, W)`` as ``(H, W)``, both >= 1."""
    parts = value.replace(",", " ").replace("x", " ").split() if isinstance(value, str) else value
    try:
        size = (int(parts),) if isinstance(parts, (int, float)) else tuple(int(v) for v in parts)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UsageError(f"input_size: expected H W or one size for a square, got {value!r}") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"input_size: expected H W (or one size for a square), each >= 1, got {value!r}")
    return size  # type: ignore[return-value]


def parse_classes(values: Iterable[str | int] | str) -> tuple[str | int, ...]:
    """Class names or ids (``"person,car"``, ``["0", 2]``) as a tuple: digits become ids."""
    items = [values] if isinstance(values, (str, int)) else list(values)
    parsed: list[str | int] = []
    for item in items:
        for part in str(item).split(",") if isinstance(item, str) else [item]:
            part = part.strip() if isinstance(part, str) else part
            if part == "":
                continue
            parsed.append(int(part) if isinstance(part, int) or part.isdigit() else part)
    if not parsed:
        raise UsageError(f"classes: expected class names or ids, got {values!r}")
    return tuple(parsed)


def parse_build_options(pairs: Iterable[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` (the CLI's ``--build-option``) as a mapping; later pairs win."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--build-option: expected NAME=VALUE, got {pair!r}")
        parsed[name.strip()] = value.strip()
    return parsed
