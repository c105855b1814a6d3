"""The model spec adapted to a loaded engine: class names and a fixed input size from the file."""

from __future__ import annotations

import dataclasses

from trtdet.class_names import parse_class_names
from trtdet.engines.base import Engine
from trtdet.model import ModelSpec


def adapt_spec(spec: ModelSpec, engine: Engine) -> ModelSpec:
    """Take class names (unless ``spec.names_from_model`` is False) and a fixed input size from the model file."""
    changes: dict[str, object] = {}
    raw_names = engine.metadata.get("names") if spec.names_from_model else None
    names = parse_class_names(raw_names) if raw_names else None
    if names and names != spec.class_names:
        changes["class_names"] = names
    shape = engine.input_shape
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        changes["input_size"] = (shape[2], shape[3])
    return dataclasses.replace(spec, **changes) if changes else spec
