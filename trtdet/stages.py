"""Making a detector's preprocessor and decoder from its model object, once per detector.

The model object's factories answer (``Model.make_preprocessor``/``make_decoder``), unless a
plugin still implements the pre-0.2 hooks ``trtdet_preprocessor``/``trtdet_decoder`` and answers
for this model: that answer wins, as it always did, with a ``DeprecationWarning`` naming the plugin.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from trtdet.context import RunContext
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.plugins import list_models, load_plugins

if TYPE_CHECKING:
    from trtdet.postprocess.decoder import Decoder
    from trtdet.preprocess.base import Preprocessor

def model_for(spec: ModelSpec) -> Model:
    """The registered model object named ``spec.name``; a spec no plugin registered gets a bare one."""
    info = list_models().get(spec.name)
    return info.model if info is not None else Model(spec)


def _legacy(hook_name: str, spec: ModelSpec, context: RunContext) -> Any:
    """The first non-None answer of a deprecated per-model hook, with a ``DeprecationWarning`` naming the plugin."""
    caller = getattr(load_plugins().hook, hook_name)
    arguments = {"model": spec, "device": context.kind}
    for impl in reversed(caller.get_hookimpls()):  # pluggy's call order
        result = impl.function(*(arguments[name] for name in impl.argnames))
        if result is None:
            continue
        warnings.warn(  # the warnings filters show it once per place, as usual
            f"trtdet plugin {impl.plugin_name!r} answers the deprecated {hook_name} hook; register a "
            "trtdet.Model with its own factories instead (docs/writing-plugins.md)",
            DeprecationWarning,
            stacklevel=3,
        )
        return result
    return None


def make_decoder(spec: ModelSpec, context: RunContext, model: Model | None = None) -> Decoder:
    """The decoder for ``spec`` (the adapted spec of ``model``) in ``context``."""
    legacy = _legacy("trtdet_decoder", spec, context)
    if legacy is not None:
        return legacy
    return (model or model_for(spec)).make_decoder(spec, context)


def make_preprocessor(spec: ModelSpec, context: RunContext, model: Model | None = None) -> Preprocessor:
    """The preprocessor for ``spec`` in ``context`` (the core's letterbox one unless a model or plugin has its own)."""
    legacy = _legacy("trtdet_preprocessor", spec, context)
    if legacy is not None:
        return legacy
    return (model or model_for(spec)).make_preprocessor(spec, context)
