"""``Result``: one image's detections plus what they were found in, as ``detector(x)`` returns them.

A ``Result`` *is* a ``Detections`` (same arrays, indexing and converters) that also knows its
source, the image it ran on (a reference, never a copy), the model's class names and the
milliseconds each stage took, so it can plot, save and convert itself without extra arguments
(as Ultralytics' ``Results``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.detections import Detections
from trtdet.errors import UsageError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import cv2
else:
    cv2 = lazy_import("cv2")

#: The stages of ``Result.speed``, in pipeline order.
STAGES = ("preprocess", "inference", "postprocess")

#: File types ``Result.save`` writes (what OpenCV encodes everywhere).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def names_dict(class_names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    """Class names as ``{id: name}`` (Ultralytics' ``names``) from a sequence or mapping."""
    if class_names is None:
        return {}
    if isinstance(class_names, Mapping):
        return {int(k): str(v) for k, v in class_names.items()}
    return dict(enumerate(map(str, class_names)))


def speed_record(detections: Any) -> dict[str, float] | None:
    """A record's ``speed``: ms per stage for one image, 3 decimals; None when nothing ran.

    The one definition behind ``trtdet run --json``, ``trtdet batch`` and ``trtdet serve``."""
    speed = getattr(detections, "speed", None)
    return {stage: round(float(speed[stage]), 3) for stage in STAGES if stage in speed} if speed else None


#: The fields a ``Result`` adds to ``Detections``.
_CONTEXT = ("source", "image", "names", "speed", "index", "error", "warning")


@dataclass(eq=False, repr=False)
class Result(Detections):
    """Detections of one image, with their ``source``, ``image``, class ``names`` and ``speed``.

    ``speed`` is ``{"preprocess", "inference", "postprocess"}`` in milliseconds per image (its
    batch's time divided by the images in it; empty when nothing ran). From ``detector.stream``:
    ``index`` is the video frame (None for an image), ``error`` why the input failed (then no
    detections and no image) and ``warning`` a problem that did not stop it.
    """

    source: str = ""
    image: Any = None
    names: dict[int, str] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)
    index: int | None = None
    error: str | None = None
    warning: str | None = None

    @classmethod
    def of(cls, detections: Detections, **context: Any) -> Result:
        """``detections`` as a ``Result`` (its arrays shared, not copied) with ``context`` set."""
        return cls(detections.xyxy, detections.confidence, detections.class_id, dict(detections.data),
                   non_finite_dropped=detections.non_finite_dropped, **context)

    def with_context(self, **context: Any) -> Result:
        """This result with ``context`` fields replaced (arrays and image shared)."""
        return Result.of(self, **{**self._context(), **context})

    def __getitem__(self, index: Any) -> Result:
        """The selected rows, with this result's source, image, names and speed."""
        return Result.of(Detections.__getitem__(self, index), **self._context())

    def _context(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CONTEXT}

    @property
    def class_names(self) -> list[str]:
        """``names`` as the list ``Detections``' converters take (ids without a name keep their number)."""
        top = max(self.names, default=-1)
        return [self.names.get(i, str(i)) for i in range(top + 1)]

    @property
    def xywh(self) -> np.ndarray:
        """Boxes as ``(center x, center y, width, height)`` in pixels, ``(N, 4) float32``."""
        x1, y1, x2, y2 = self.xyxy.T
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1).astype(np.float32).reshape(-1, 4)

    @property
    def xyxyn(self) -> np.ndarray:
        """``xyxy`` divided by the image's width and height (0..1)."""
        return self.xyxy / self._size()

    @property
    def xywhn(self) -> np.ndarray:
        """``xywh`` divided by the image's width and height (0..1)."""
        return self.xywh / self._size()

    def _size(self) -> np.ndarray:
        shape = getattr(self.image, "shape", None)
        if shape is None:
            raise UsageError(f"{self.source or 'result'}: no image, so no normalised boxes")
        height, width = int(shape[0]), int(shape[1])
        return np.array([width, height, width, height], np.float32)

    def _array(self) -> np.ndarray:
        if self.image is None:
            raise UsageError(f"{self.source or 'result'}: no image to draw on" + (f" ({self.error})" if self.error else ""))
        return self.image if isinstance(self.image, np.ndarray) else self.image.cpu().numpy()  # GPU-decoded

    def plot(self) -> np.ndarray:
        """An annotated BGR copy of the image (``trtdet.draw``: boxes, ``label score``)."""
        from trtdet.io.draw import draw

        return draw(self._array(), self, self.class_names)

    def save(self, path: str | Path) -> Path:
        """Write ``plot()`` to ``path`` (.jpg, .png, .bmp, .webp, .tif); returns the path.

        A suffix OpenCV cannot write or a path that cannot be written is one ``UsageError`` line.
        """
        path = Path(path)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"{path}: cannot save an image as {path.suffix or 'a file without a suffix'!r}; "
                             f"use one of {', '.join(IMAGE_SUFFIXES)}")
        ok, encoded = cv2.imencode(path.suffix, self.plot())
        if not ok:
            raise UsageError(f"{path}: OpenCV cannot encode {path.suffix}")
        try:
            path.write_bytes(encoded.tobytes())
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
        return path

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``Detections.to_records`` with this result's names unless others are given."""
        return super().to_records(self.class_names if class_names is None else class_names)

    def to_json(self, class_names: Sequence[str] | None = None) -> str:
        """The detections as a JSON array of ``{"box", "score", "class_id", "label"}`` (labels named)."""
        return json.dumps(self.to_records(class_names))

    def to_supervision(self, class_names: Sequence[str] | None = None) -> Any:
        """A ``supervision.Detections`` with ``data["class_name"]`` filled from ``names``."""
        return super().to_supervision(self.class_names if class_names is None else class_names)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.image, "shape", ())) or None
        where = self.source + (f"#{self.index}" if self.index is not None else "")
        speed = ", ".join(f"{self.speed[s]:.1f}ms {s}" for s in STAGES if s in self.speed) or "not run"
        problem = f", error={self.error!r}" if self.error else ""
        return f"Result({len(self)} detection(s), source={where!r}, image shape={shape}, speed: {speed}{problem})"

    __str__ = __repr__
