"""The trtdet plugin hooks: models, preprocess, engine and decode.

A plugin is a module with functions decorated by ``trtdet.hookimpl`` and named after these
specs; it is found through the ``trtdet`` entry-point group. Hooks are resolved once per
pipeline, never per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import onnx

    from trtdet.engines.base import EngineBackend
    from trtdet.model import Decoder, ModelSpec
    from trtdet.preprocess.base import Preprocessor

hookspec = pluggy.HookspecMarker("trtdet")
hookimpl = pluggy.HookimplMarker("trtdet")


@hookspec
def trtdet_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register the models this plugin provides by calling ``register(spec)`` for each.

    Every plugin's implementation runs; a model name registered twice is an error that
    names both plugins.
    """


@hookspec(firstresult=True)
def trtdet_preprocessor(model: ModelSpec, device: str) -> Preprocessor | None:
    """Return the preprocessor for ``model`` on ``device`` (``"cpu"`` or ``"cuda"``), or None.

    First non-None result wins, so a model plugin overrides preprocessing by answering for
    its own model; the core's warp-affine preprocessor answers last for every model.
    """


@hookspec
def trtdet_engine_backends(register: Callable[[EngineBackend], None]) -> None:
    """Register engine backends (ONNX Runtime, TensorRT, PyTorch, ...) with ``register(backend)``.

    Every plugin's implementation runs; ``--backend auto`` picks the available backend with
    the highest priority that loads the given model file kind.
    """


@hookspec(firstresult=True)
def trtdet_decoder(model: ModelSpec, device: str) -> Decoder | None:
    """Return the decoder turning ``model``'s raw outputs into ``Detections``, or None.

    First non-None result wins; a model without a decoder cannot run.
    """


@hookspec
def trtdet_torch_prepare(model: ModelSpec) -> None:
    """Register what the torch backend needs before it converts an ONNX file of ``model``.

    Called before every onnx2torch conversion, so a model plugin can add converters for ops
    onnx2torch lacks (e.g. ``DeformConv``). Must be idempotent. Every implementation runs.
    """


# -- TensorRT builds ---------------------------------------------------------------------------
# The TensorRT backend calls these so model plugins can contribute layers TensorRT lacks
# (e.g. CenterNet's DCNv2) without the core naming any model plugin.


@hookspec
def trtdet_tensorrt_prepare(model: ModelSpec, trt: ModuleType, flavour: str) -> list[tuple[str, str, str]] | None:
    """Register the TensorRT plugin creators ``model`` may need with ``trt.get_plugin_registry()``.

    Called before every engine build and deserialisation; ``trt`` is the imported TensorRT
    module (``tensorrt`` or ``tensorrt_rtx_bindings``) and ``flavour`` its ``--trt`` name
    (``"tensorrt"``/``"rtx"``). Must be idempotent. Return the ``(name, version, namespace)``
    of each creator this plugin provides (so an engine records which package it needs), or None.
    Every plugin's implementation runs.
    """


@hookspec(firstresult=True)
def trtdet_tensorrt_rewrite_onnx(
    model: ModelSpec, onnx_model: onnx.ModelProto, flavour: str, dcn: str
) -> onnx.ModelProto | None:
    """Rewrite ``onnx_model`` before TensorRT parses it, or return None to leave it as is.

    ``dcn`` is the deformable-convolution lowering chosen for this build: ``"builtin"``
    (keep ONNX ``DeformConv`` for TensorRT's own plugin), ``"plugin"`` (a model plugin's
    TensorRT plugin) or ``"decomposed"`` (standard ONNX ops only). Must not modify
    ``onnx_model`` in place. First non-None result wins.
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
