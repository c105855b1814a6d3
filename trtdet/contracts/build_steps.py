"""Build steps: model-specific rewrites plugins contribute to engine builds, chosen by name.

A plugin registers steps through the ``trtdet_build_steps(register)`` hook. Each step has a
name (the ``NAME`` of ``--build-option NAME=VALUE``), its choices and default, and decides
whether it applies to a given ONNX and model; when it does, the builder resolves the user's
choice against the runtime (``auto`` picks what works there; an impossible explicit choice
is a one-line ``UsageError``), lets the step rewrite the ONNX, registers the runtime plugins
the step needs, and records the concrete choice in the artifact's ``build_options``. The core
stores those choices and keys its cache by them without interpreting them.

This module holds the contract only; choosing among the registered steps is
``trtdet.build_options`` (it reads the plugin registry, which this module must not import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import onnx

    from trtdet.model import ModelSpec


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric parts of a version: ``"10.13.0.35"`` -> ``(10, 13, 0, 35)``, ``"1.7rc1"`` -> ``(1,)``."""
    parts = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime an artifact is built for (or loaded with), as build steps see it.

    ``runtime`` is the artifact metadata's runtime name (``"tensorrt"``, ``"rtx"``, ...),
    ``label`` its name for messages (``"TensorRT 10.13.0"``), ``python_plugins`` whether it
    can run plugins written in Python, ``module`` the imported runtime module (e.g.
    ``tensorrt``, for registering plugin creators), if any.
    """

    runtime: str
    version: str
    label: str
    python_plugins: bool = False
    module: ModuleType | None = field(default=None, compare=False)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)


@dataclass(frozen=True)
class StepPlugins:
    """The runtime plugins a step's choice needs before a build or a load.

    ``creators``: the ``(name, version, namespace)`` of each TensorRT plugin creator the step
    registered with the runtime's plugin registry; ``plugin_library``: the runtime's own
    plugin library must be initialised (TensorRT: ``init_libnvinfer_plugins``).
    """

    creators: tuple[tuple[str, str, str], ...] = ()
    plugin_library: bool = False


class BuildStep(Protocol):
    """A plugin's contribution to engine builds, registered with ``trtdet_build_steps``."""

    #: The option name: ``--build-option NAME=VALUE``, ``build_options={NAME: VALUE}``.
    name: str
    #: Every accepted value, the default included.
    choices: tuple[str, ...]
    #: The value used when the user chooses none (e.g. ``"auto"``).
    default: str
    #: One line for ``--help`` and error messages.
    help: str

    def applies(self, onnx_model: onnx.ModelProto, spec: ModelSpec) -> bool:
        """Whether this build of ``onnx_model`` for ``spec`` needs the step."""
        ...

    def resolve(self, choice: str, runtime: RuntimeInfo) -> str:
        """The concrete choice for ``runtime`` (``auto`` picks one); ``UsageError`` if impossible."""
        ...

    def rewrite(self, onnx_model: onnx.ModelProto, spec: ModelSpec, choice: str) -> onnx.ModelProto:
        """``onnx_model`` rewritten for the concrete ``choice`` (a copy: never modify it in place)."""
        ...

    def prepare(self, choice: str, runtime: RuntimeInfo) -> StepPlugins:
        """Register the runtime plugins ``choice`` needs (idempotent); before builds and loads."""
        ...

    def parse_hint(self, op_type: str, choice: str, runtime: RuntimeInfo) -> str | None:
        """What to add to a parse error on an ``op_type`` node this step is about, else None."""
        ...


@dataclass(frozen=True)
class RegisteredStep:
    """A build step and the plugin (and distribution) that registered it."""

    step: BuildStep
    plugin: str
    distribution: str


@dataclass(frozen=True)
class PlannedStep:
    """A step that applies to this build, with its concrete choice."""

    registered: RegisteredStep
    choice: str

    @property
    def step(self) -> BuildStep:
        return self.registered.step


def option_text(name: str, value: str) -> str:
    """How a user spells a build option on the command line."""
    return f"--build-option {name}={value}"


def chosen_options(planned: tuple[PlannedStep, ...]) -> dict[str, str]:
    """The ``build_options`` an artifact records: step name -> concrete choice."""
    return {p.step.name: p.choice for p in planned}
