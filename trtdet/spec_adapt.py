"""The model spec adapted to a loaded engine: class names and a fixed input size from the file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from trtdet.class_names import parse_class_names
from trtdet.model import ModelSpec
from trtdet.preprocess.letterbox import resolve_letterbox

if TYPE_CHECKING:  # a type only: the engines import this module to rebuild from a file
    from trtdet.contracts.engine import Engine


def adapt_spec(spec: ModelSpec, engine: Engine) -> ModelSpec:
    """The spec as the (active) engine's model file describes it: see ``adapt_spec_to_file``."""
    return adapt_spec_to_file(spec, engine.metadata, engine.input_shape)


def adapt_spec_to_file(spec: ModelSpec, metadata: Mapping[str, str], input_shape: Sequence[object]) -> ModelSpec:
    """Take class names (unless ``spec.names_from_model`` is False) and a fixed input size from a model file.

    ``metadata`` is the file's metadata (``names``: a JSON list or Ultralytics' literal);
    ``input_shape`` its ``[B, C, H, W]`` input, whose H and W win when they are fixed (when they
    are dynamic, a trtdet engine's ``input_size``, the largest it was built for, wins); a
    ``rect`` letterbox stays only when both are dynamic (``resolve_letterbox``), as Ultralytics'
    predictor pads to a multiple of the stride only for a model that accepts any size.
    """
    changes: dict[str, object] = {}
    raw_names = metadata.get("names") if spec.names_from_model else None
    names = parse_class_names(raw_names) if raw_names else None
    if names and names != spec.class_names:
        changes["class_names"] = names
    shape = tuple(input_shape)
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        changes["input_size"] = (shape[2], shape[3])
    dynamic_hw = len(shape) == 4 and not isinstance(shape[2], int) and not isinstance(shape[3], int)
    largest = _artifact_input_size(metadata) if dynamic_hw else None
    if largest is not None and largest != tuple(spec.input_size):
        changes["input_size"] = largest
    if spec.letterbox == "rect" and resolve_letterbox("rect", dynamic_hw) != "rect":
        changes["letterbox"] = "square"
    return dataclasses.replace(spec, **changes) if changes else spec


def _artifact_input_size(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """The largest input a trtdet engine artifact with a dynamic H x W was built for
    (``dynamic_input_size`` and ``input_size`` in its header); None for other model files."""
    if metadata.get("dynamic_input_size") != "true":
        return None
    try:
        height, width = json.loads(metadata["input_size"])
        return int(height), int(width)
    except (KeyError, TypeError, ValueError):
        return None
