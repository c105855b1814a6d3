"""Structural checks of an ONNX model before the converter reads it, one ``ModelError`` line each.

onnxruntime refuses an empty file, a model without a graph and an initializer whose data does
not match its declared shape with one message; the converter used to fail on them with an
``IndexError`` or by asking numpy for a 10^12-element array. These checks run first.
"""

from __future__ import annotations

import math
from typing import Any

from trtdet.errors import ModelError

#: Bytes per element of the ONNX tensor types stored in ``raw_data`` (``TensorProto.DataType``).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}
#: The typed field each type's values are stored in when not in ``raw_data``, and values per element.
_TYPED_FIELD = {1: ("float_data", 1), 2: ("int32_data", 1), 3: ("int32_data", 1), 4: ("int32_data", 1),
                5: ("int32_data", 1), 6: ("int32_data", 1), 7: ("int64_data", 1), 8: ("string_data", 1),
                9: ("int32_data", 1), 10: ("int32_data", 1), 11: ("double_data", 1), 12: ("uint64_data", 1),
                13: ("uint64_data", 1), 14: ("float_data", 2), 15: ("double_data", 2), 16: ("int32_data", 1)}


def _held(tensor: Any) -> int | None:
    """Elements ``tensor`` holds (None for a type this check does not know: left to the converter)."""
    if tensor.HasField("raw_data"):
        size = _ITEM_BYTES.get(tensor.data_type)
        return None if size is None else len(tensor.raw_data) // size
    field = _TYPED_FIELD.get(tensor.data_type)
    if field is None:
        return None
    name, per_element = field
    return len(getattr(tensor, name)) // per_element


def check_initializers(graph: Any, label: str) -> None:
    """Every initializer holds exactly the elements its dimensions declare (checked before any is read)."""
    for tensor in graph.initializer:
        if tensor.data_location == 1:  # EXTERNAL, not loaded: the converter reads loaded models only
            raise ModelError(f"{label}: initializer {tensor.name!r} keeps its data in an external file that was not loaded")
        dims = list(tensor.dims)
        if any(d < 0 for d in dims):
            raise ModelError(f"{label}: initializer {tensor.name!r} has a negative dimension {dims}")
        declared = math.prod(dims)
        held = _held(tensor)
        if held is not None and held != declared:
            raise ModelError(
                f"{label}: initializer {tensor.name!r} declares shape {dims} = {declared:,} elements "
                f"but holds {held:,} (a corrupt or hostile file)"
            )


def check_structure(model: Any, label: str) -> None:
    """``ModelError`` naming ``label`` unless ``model`` has a graph with an input and an output, and
    initializers that hold what they declare."""
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.output)):
        raise ModelError(f"{label}: not an ONNX model: no graph was found in the protobuf")
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    if not any(inp.name not in initializers for inp in graph.input):
        raise ModelError(f"{label}: the ONNX graph has no input")
    if not len(graph.output):
        raise ModelError(f"{label}: the ONNX graph has no output")
    check_initializers(graph, label)
