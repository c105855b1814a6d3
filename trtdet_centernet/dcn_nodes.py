"""Finding deformable convolutions in an ONNX graph: the one place that knows their encodings.

* standard: ONNX ``DeformConv`` (opset 19), what this plugin exports;
* the C++ tutorial / tensorRTIntegrate form: op ``Plugin`` whose ``name`` attribute is
  ``DCNv2`` (any case);
* the onnx-tensorrt fork form (CaoWGG/TensorRT-CenterNet): op ``DCNv2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trtdet.lazy import lazy_import

if TYPE_CHECKING:  # callers hand in ONNX graphs they loaded, so onnx is imported by then
    import onnx
    import onnx.helper as helper
else:
    helper = lazy_import("onnx.helper")

STANDARD_OP = "DeformConv"
TUTORIAL_OP = "Plugin"
FORK_OP = "DCNv2"
#: Op types a deformable-convolution node may have.
OP_TYPES = (STANDARD_OP, TUTORIAL_OP, FORK_OP)


def attribute(node: onnx.NodeProto, name: str) -> Any:
    """A node attribute's value (bytes decoded to str), or None."""
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return None


def is_tutorial_dcn(node: onnx.NodeProto) -> bool:
    return node.op_type == TUTORIAL_OP and str(attribute(node, "name") or "").lower() == "dcnv2"


def is_fork_dcn(node: onnx.NodeProto) -> bool:
    return node.op_type == FORK_OP


def is_legacy_dcn(node: onnx.NodeProto) -> bool:
    return is_tutorial_dcn(node) or is_fork_dcn(node)


def is_dcn(node: onnx.NodeProto) -> bool:
    return node.op_type == STANDARD_OP or is_legacy_dcn(node)


def dcn_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The deformable-convolution nodes of the main graph, in any of the encodings above."""
    return [node for node in model.graph.node if is_dcn(node)]


def has_legacy_dcn(model: onnx.ModelProto) -> bool:
    return any(is_legacy_dcn(node) for node in model.graph.node)
