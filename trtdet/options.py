"""``DetectorOptions``: how to load and run a detector, one frozen object from the CLI to the backend.

The CLI builds it from its flags, ``trtdet.load`` from its keyword arguments; the engine
backend receives it unchanged (``EngineBackend.load(model_file, spec, options)``). Values are
checked when it is created, each bad one a one-line ``UsageError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trtdet.devices import normalize_device
from trtdet.errors import UsageError
from trtdet.preprocess.letterbox import LETTERBOXES

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class DetectorOptions:
    """Everything a detector is loaded with, besides the model name.

    * ``weights`` / ``onnx`` / ``engine``: the model file (at most one; none: the model's
      shipped default).
    * ``backend``: an engine backend name, or ``auto``; ``device``: ``cpu``, ``cuda`` (the
      current GPU) or ``cuda:N`` (GPU N; see ``trtdet.devices``).
    * ``precision``: ``fp32`` or ``fp16`` (GPU backends); ``batch``: the largest batch sent
      to the engine (>= 1); ``cuda_graphs``: replay the network in CUDA graphs (None: the
      backend's default -- on for compiled ``inductor`` packages, off for eager torch and TensorRT).
    * ``input_size``: the network input (H, W), or one int for a square, overriding the
      model's; ``conf`` / ``iou``: thresholds in [0, 1] overriding the model's.
    * ``classes``: keep only these classes (names or ids; None: all); ``max_det``: at most
      this many detections per image (default: the model's); ``agnostic_nms``: suppress
      overlapping boxes across classes, not only within one (models whose decode runs NMS).
    * ``letterbox``: the preprocess geometry, ``rect``, ``square`` (alias ``ultralytics``),
      ``warp`` or ``stretch`` (``trtdet.preprocess.letterbox``), overriding the model's
      (``ModelSpec.letterbox``; None keeps it).
    * ``build_options``: choices for the build steps plugins contribute to engine builds
      (``--build-option NAME=VALUE``; see ``trtdet.engines.build_steps``), by step name.
    """

    weights: str | Path | None = None
    onnx: str | Path | None = None
    engine: str | Path | None = None
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 1
    input_size: tuple[int, int] | None = None
    conf: float | None = None
    iou: float | None = None
    cuda_graphs: bool | None = None
    classes: tuple[str | int, ...] | None = None
    max_det: int | None = None
    agnostic_nms: bool = False
    letterbox: str | None = None
    build_options: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", normalize_device(self.device))
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision: expected 'fp32' or 'fp16', got {self.precision!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError(f"batch: expected >= 1, got {self.batch}")
        given = [name for name in ("weights", "onnx", "engine") if getattr(self, name) is not None]
        if len(given) > 1:
            raise UsageError(f"give at most one of --weights, --onnx, --engine (got {', '.join(given)})")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", parse_input_size(self.input_size))
        if self.letterbox is not None and self.letterbox not in LETTERBOXES:
            raise UsageError(f"letterbox: expected one of {', '.join(LETTERBOXES)}, got {self.letterbox!r}")
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise UsageError(f"{name}: expected a value in [0, 1], got {value:g}")
                object.__setattr__(self, name, value)
        if self.max_det is not None and (not isinstance(self.max_det, int) or self.max_det < 1):
            raise UsageError(f"max_det: expected >= 1, got {self.max_det!r}")
        if self.classes is not None:
            object.__setattr__(self, "classes", parse_classes(self.classes))
        object.__setattr__(self, "build_options", {str(k): str(v) for k, v in dict(self.build_options).items()})

    def replace(self, **changes: Any) -> DetectorOptions:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def overriding(self, **values: Any) -> DetectorOptions:
        """A copy taking each of ``values`` that differs from the field's default."""
        defaults = {f.name: f.default for f in fields(self) if f.name != "build_options"}
        changes = {name: value for name, value in values.items() if name in defaults and value != defaults[name]}
        if values.get("build_options"):
            changes["build_options"] = {**self.build_options, **dict(values["build_options"])}
        return replace(self, **changes) if changes else self


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
