"""Choosing among the registered build steps: check a user's ``build_options``, plan a build's steps.

The steps' contract is ``trtdet.contracts.build_steps``; this module reads the plugin registry
for the steps installed (``trtdet.plugins.list_build_steps``), so the contract stays below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from trtdet.contracts.build_steps import PlannedStep, RuntimeInfo, option_text
from trtdet.errors import UsageError
from trtdet.plugins import list_build_steps

if TYPE_CHECKING:
    import onnx

    from trtdet.model import ModelSpec


def check_build_options(requested: Mapping[str, str]) -> None:
    """``UsageError`` for an unknown step name or choice, listing the known ones."""
    if not requested:
        return
    steps = list_build_steps()
    for name, value in requested.items():
        if name not in steps:
            known = ", ".join(sorted(steps)) or "none installed"
            raise UsageError(f"unknown build option {name!r} (known: {known})")
        step = steps[name].step
        if value not in step.choices:
            raise UsageError(f"unknown {option_text(name, value)} (choose from: {', '.join(step.choices)})")


def plan_steps(
    onnx_model: onnx.ModelProto, spec: ModelSpec, requested: Mapping[str, str], runtime: RuntimeInfo
) -> tuple[PlannedStep, ...]:
    """The registered steps that apply to this build, each with its choice resolved for ``runtime``."""
    check_build_options(requested)
    planned = []
    for name, registered in list_build_steps().items():
        if registered.step.applies(onnx_model, spec):
            choice = registered.step.resolve(requested.get(name, registered.step.default), runtime)
            planned.append(PlannedStep(registered, choice))
    return tuple(planned)


def steps_of(build_options: Mapping[str, str]) -> tuple[PlannedStep, ...]:
    """The planned steps an artifact's recorded ``build_options`` stand for.

    ``UsageError`` names a step no installed plugin provides (its runtime plugins cannot be
    registered without it).
    """
    steps = list_build_steps()
    missing = [name for name in build_options if name not in steps]
    if missing:
        known = ", ".join(sorted(steps)) or "none installed"
        raise UsageError(
            f"built with build option(s) {', '.join(missing)} that no installed plugin provides "
            f"(installed build steps: {known}); install the model's plugin package"
        )
    return tuple(PlannedStep(steps[name], choice) for name, choice in build_options.items())
