"""ONNX -> torch, traceable: trtdet's own converter for detection networks.

``convert(model, input_size=(H, W))`` folds every constant and every shape computation for
the fixed per-sample input shape and returns an ``OnnxModule`` whose forward reads no size
from a tensor: ``torch.export.export`` traces it with a dynamic batch, and it runs eagerly.
Models exported with a static batch run at any batch size.

Ops come from ``trtdet.onnx_torch.ops``; plugins add converters for the ops their networks
need through the ``trtdet_onnx_torch_ops(register)`` hook (``register(op_type, converter)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trtdet.onnx_torch.graph import Converter, OnnxNode, Unsupported, build_plan, load_model
from trtdet.onnx_torch.module import OnnxModule
from trtdet.onnx_torch.ops import CONVERTERS, SHAPE_OPS

__all__ = ["Converter", "OnnxModule", "OnnxNode", "Unsupported", "convert", "plugin_converters", "supported_ops"]


def plugin_converters() -> dict[str, Converter]:
    """The converters installed plugins register through the ``trtdet_onnx_torch_ops`` hook."""
    from trtdet.plugins import load_plugins

    found: dict[str, Converter] = {}

    def register(op_type: str, converter: Converter) -> None:
        found[op_type] = converter

    load_plugins().hook.trtdet_onnx_torch_ops(register=register)
    return found


def supported_ops(converters: Mapping[str, Converter] | None = None) -> list[str]:
    """Op types the converter handles: the built-in ones and ``converters`` (default: plugins')."""
    extra = plugin_converters() if converters is None else converters
    return sorted(set(CONVERTERS) | set(SHAPE_OPS) | set(extra) | {"Constant"})


def convert(
    model: Any,
    *,
    input_size: tuple[int, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    converters: Mapping[str, Converter] | None = None,
    source: str | None = None,
) -> OnnxModule:
    """Convert an ONNX model (path, bytes or ``onnx.ModelProto``) to an ``OnnxModule`` (float32, eval).

    ``input_size`` (H, W) fixes the spatial size of 4-D inputs the file leaves dynamic;
    ``input_shapes`` maps input names to full per-sample shapes (batch excluded) instead. The
    batch dimension always stays dynamic. ``converters`` adds to or overrides the built-in op
    converters; by default those of installed plugins are added (pass ``{}`` for built-ins only).
    ``source`` names the model in messages (default: the path given).

    Raises ``ModelError`` with one line naming the file, the op type and the node for a node
    that cannot be converted.
    """
    proto, label = load_model(model)
    label = source or label
    table: dict[str, Converter] = dict(CONVERTERS)
    table.update(plugin_converters() if converters is None else converters)
    plan = build_plan(proto, label=label, converters=table, shape_ops=SHAPE_OPS,
                      input_size=input_size, input_shapes=input_shapes)
    return OnnxModule(plan, label)
