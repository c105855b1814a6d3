"""Detections: per-image arrays of boxes, scores and classes, validated on creation.

Field names follow supervision's ``Detections`` so converting is one line:
``sv.Detections(xyxy=d.xyxy, confidence=d.confidence, class_id=d.class_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _check(name: str, array: np.ndarray, ndim: int, last: int | None, length: int | None) -> None:
    if array.ndim != ndim or (last is not None and array.shape[-1] != last):
        want = "(N,)" if ndim == 1 else f"(N, {last})"
        raise ValueError(f"Detections.{name}: expected shape {want}, got {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"Detections.{name}: expected {length} rows to match xyxy, got {len(array)}")


def _owned(values: object, dtype: type) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    return array if array.base is None and array.flags.owndata else array.copy()


@dataclass
class Detections:
    """Detections of one image, in original-image pixels.

    ``xyxy`` is ``(N, 4) float32``, ``confidence`` ``(N,) float32`` in [0, 1],
    ``class_id`` ``(N,) int64``; ``data`` holds extra per-detection arrays of length N.
    Index with an int array or boolean mask to select rows.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Own the data: decoders fill reused (pinned) buffers, and a view into one would
        # change under the caller when the next batch lands.
        self.xyxy = _owned(self.xyxy, np.float32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        self.confidence = _owned(self.confidence, np.float32)
        self.class_id = np.asarray(self.class_id)
        fractional = not np.issubdtype(self.class_id.dtype, np.integer) and not np.all(np.mod(self.class_id, 1) == 0)
        if self.class_id.size and fractional:
            raise ValueError(f"Detections.class_id: expected integers, got {self.class_id.dtype} with fractions")
        self.class_id = self.class_id.astype(np.int64)
        _check("xyxy", self.xyxy, 2, 4, None)
        n = len(self.xyxy)
        _check("confidence", self.confidence, 1, None, n)
        _check("class_id", self.class_id, 1, None, n)
        for key, value in self.data.items():
            value = np.asarray(value)
            if len(value) != n:
                raise ValueError(f"Detections.data[{key!r}]: expected {n} rows to match xyxy, got {len(value)}")
            self.data[key] = value

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {k: v[index] for k, v in self.data.items()},
        )

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready list of ``{"box", "score", "class_id", "label"}`` dicts."""
        records = []
        for box, score, cls in zip(self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist(), strict=True):
            label = class_names[cls] if class_names is not None and 0 <= cls < len(class_names) else str(cls)
            records.append(
                {"box": [round(v, 2) for v in box], "score": round(score, 4), "class_id": cls, "label": label}
            )
        return records
