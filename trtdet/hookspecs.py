"""The trtdet plugin hooks: models (as objects), engine backends, build steps, ONNX op converters.

A plugin is a module with functions decorated by ``trtdet.hookimpl`` and named after these
specs; it is found through the ``trtdet`` entry-point group. A model is one registered
``trtdet.Model`` that carries its own preprocessor and decoder factories; the hooks are for
what crosses models. The per-model hooks ``trtdet_preprocessor``/``trtdet_decoder`` remain
for plugins written before 0.2 (deprecated: answering them warns). Hooks are resolved once
per pipeline, never per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from trtdet.contracts.build_steps import BuildStep
    from trtdet.contracts.engine import EngineBackend
    from trtdet.model import ModelSpec
    from trtdet.models import Model
    from trtdet.postprocess.decoder import Decoder
    from trtdet.preprocess.base import Preprocessor

hookspec = pluggy.HookspecMarker("trtdet")
hookimpl = pluggy.HookimplMarker("trtdet")


@hookspec
def trtdet_register_models(register: Callable[[Model], None]) -> None:
    """Register the models this plugin provides by calling ``register(model)`` for each ``trtdet.Model``.

    Every plugin's implementation runs, once per set of installed plugins (the registry caches
    the result); a model name registered twice is an error that names both plugins. A bare
    ``ModelSpec`` is still accepted (its decoder then comes from ``trtdet_decoder``).
    """


@hookspec(firstresult=True)
def trtdet_preprocessor(model: ModelSpec, device: str) -> Preprocessor | None:
    """Deprecated: give the ``trtdet.Model`` a ``preprocessor`` factory instead.

    Return the preprocessor for ``model`` on ``device`` (``"cpu"`` or ``"cuda"``), or None.

    ``device`` is the kind: a detector on ``cuda:N`` calls the hook with GPU N current.

    First non-None result wins over the model object's factory (with a ``DeprecationWarning``);
    None everywhere leaves the model object's preprocessor (by default the core's letterbox).
    """


@hookspec
def trtdet_engine_backends(register: Callable[[EngineBackend], None]) -> None:
    """Register engine backends (ONNX Runtime, TensorRT, PyTorch, ...) with ``register(backend)``.

    Every plugin's implementation runs; ``--backend auto`` picks the available backend with
    the highest priority that loads the given model file kind.
    """


@hookspec(firstresult=True)
def trtdet_decoder(model: ModelSpec, device: str) -> Decoder | None:
    """Deprecated: give the ``trtdet.Model`` ``decoder``/``cuda_decoder`` factories instead.

    Return the decoder turning ``model``'s raw outputs into ``Detections``, or None. First
    non-None result wins over the model object's factories (with a ``DeprecationWarning``).
    """


# -- engine builds -----------------------------------------------------------------------------
# Backends that compile artifacts (TensorRT) run these steps, so model plugins can contribute
# what their networks need (e.g. CenterNet's DCNv2 lowering) without the core naming them.


@hookspec
def trtdet_build_steps(register: Callable[[BuildStep], None]) -> None:
    """Register engine build steps with ``register(step)`` (see ``trtdet.contracts.build_steps``).

    Every plugin's implementation runs; a step name registered twice is an error naming both
    plugins. A step applies only to the builds its ``applies(onnx_model, spec)`` accepts; its
    name is the option users set with ``--build-option NAME=VALUE``.
    """


@hookspec
def trtdet_onnx_torch_ops(register: Callable[[str, Callable[..., object]], None]) -> None:
    """Register ONNX op converters for ``trtdet.onnx_torch`` with ``register(op_type, converter)``.

    A converter takes a ``trtdet.onnx_torch.OnnxNode`` (attributes, constant inputs, shapes
    at conversion) and returns a callable (a function or an ``nn.Module``) called with one
    run-time value per ONNX input; it must read no size from a tensor, so the converted
    network stays traceable by ``torch.export``. Every implementation runs; a later
    registration of the same op type replaces an earlier one.
    """


# -- the command line --------------------------------------------------------------------------


@hookspec
def trtdet_register_commands(register: Callable[[click.Command], None]) -> None:
    """Add ``trtdet`` subcommands with ``register(command)`` (a ``click.Command``).

    Every plugin's implementation runs, when the command line first looks a command up; a
    name taken by a built-in command or registered twice is an error naming both.
    """
