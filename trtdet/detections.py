"""Detections: per-image arrays of boxes, scores and classes, validated on creation.

Field names follow supervision's ``Detections``; ``to_supervision()`` and
``Detections.from_supervision(...)`` convert both ways when supervision is installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The ``data`` key of the track identity each detection got from a tracker (``--track``).
TRACK_ID = "track_id"


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
    #: Rows the model gave for this image with a NaN/Inf box or score, dropped by the detector
    #: (``trtdet.pipeline.finite_only``; ``trtdet run`` puts the count in the record's warning).
    #: A fact about the image, so selecting rows keeps it.
    non_finite_dropped: int = 0

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
            self.non_finite_dropped,
        )

    def labels(self, class_names: Sequence[str] | None = None) -> list[str]:
        """The class name of each detection (its class id as text where ``class_names`` has none)."""
        names = class_names or ()
        return [names[cls] if 0 <= cls < len(names) else str(cls) for cls in self.class_id.tolist()]

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready list of ``{"box", "score", "class_id", "label"}`` dicts (plus ``track_id`` when tracked)."""
        records = []
        tracks = self.data.get(TRACK_ID)
        rows = zip(self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist(), self.labels(class_names), strict=True)
        for i, (box, score, cls, label) in enumerate(rows):
            record = {"box": [round(v, 2) for v in box], "score": round(score, 4), "class_id": cls, "label": label}
            if tracks is not None:
                record[TRACK_ID] = int(tracks[i])
            records.append(record)
        return records

    def to_json(self, class_names: Sequence[str] | None = None) -> str:
        """``to_records`` as a JSON array."""
        return json.dumps(self.to_records(class_names))

    def to_supervision(self, class_names: Sequence[str] | None = None) -> Any:
        """The same detections as a ``supervision.Detections`` (needs ``pip install supervision``).

        ``data["track_id"]`` becomes ``tracker_id``; other ``data`` arrays are carried over,
        and with ``class_names`` each detection's name is in ``data["class_name"]`` (where
        supervision's label annotator looks).
        """
        sv = _supervision()
        data = {key: value for key, value in self.data.items() if key != TRACK_ID}
        if class_names is not None:
            data["class_name"] = np.array(self.labels(class_names))
        tracks = self.data.get(TRACK_ID)
        return sv.Detections(
            xyxy=self.xyxy.copy(),
            confidence=self.confidence.copy(),
            class_id=self.class_id.copy(),
            tracker_id=None if tracks is None else np.asarray(tracks, np.int64),
            data=data,
        )

    @classmethod
    def from_supervision(cls, detections: Any) -> Detections:
        """A ``supervision.Detections`` as trtdet ``Detections`` (confidence 1 and class 0 where it has none).

        ``tracker_id`` becomes ``data["track_id"]``; ``data`` arrays are carried over, masks are not.
        """
        n = len(detections.xyxy)
        confidence = detections.confidence if detections.confidence is not None else np.ones(n, np.float32)
        class_id = detections.class_id if detections.class_id is not None else np.zeros(n, np.int64)
        data = {key: np.asarray(value) for key, value in dict(detections.data).items()}
        if detections.tracker_id is not None:
            data[TRACK_ID] = np.asarray(detections.tracker_id, np.int64)
        return cls(detections.xyxy, confidence, class_id, data)


def _supervision() -> Any:
    try:
        import supervision
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "Detections.to_supervision needs supervision: pip install supervision", name="supervision"
        ) from exc
    return supervision
