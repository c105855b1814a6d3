"""The first batch's outputs checked against the shapes the engine declared at load.

The decoder chose its head from the declared shapes (``Decoder.validate``). onnxruntime takes
an ONNX file's declared output shapes on trust: a real ``[1, 8400, 84]`` under a declared
``[batch, 84, anchors]`` decoded as garbage (scores of 634.8, zero-width boxes) with exit 0.
So the pipeline compares what the engine actually returned with what it declared, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trtdet.contracts.engine import Shape
from trtdet.errors import ModelOutputError


def _fits(declared: Shape, actual: tuple[int, ...]) -> bool:
    """Same rank, and every fixed (non-negative int) declared dimension equals the actual one."""
    if len(declared) != len(actual):
        return False
    return all(not isinstance(d, int) or d < 0 or d == a for d, a in zip(declared, actual, strict=True))


def check_outputs(declared: Mapping[str, Shape], outputs: Mapping[str, Any], source: str) -> None:
    """``ModelOutputError`` naming ``source`` when an output is missing or its shape contradicts
    the declared one. Outputs declared without a shape (``()``, read by a trial run at load) pass."""
    for name, shape in declared.items():
        if not shape:
            continue
        if name not in outputs:
            raise ModelOutputError(f"{source}: the engine returned no output {name!r} (got {sorted(outputs)})")
        actual = tuple(int(d) for d in outputs[name].shape)
        if not _fits(shape, actual):
            raise ModelOutputError(
                f"{source}: output {name} is {list(actual)} when run, but the model declares {list(shape)}; "
                "its declared output shape is wrong (re-export the model)"
            )
