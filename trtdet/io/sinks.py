"""Writing results: detections as JSON lines, annotated images and videos."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from trtdet.detections import Detections
from trtdet.io.draw import draw_detections
from trtdet.io.sources import Frame


def frame_record(frame: Frame, detections: Detections | None, class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON-lines record of one image or video frame (DESIGN.md's contract)."""
    height, width = (frame.image.shape[:2] if frame.image is not None else (None, None))
    return {
        "source": frame.name,
        "frame": frame.index,
        "width": width,
        "height": height,
        "detections": detections.to_records(class_names) if detections is not None else [],
        "error": frame.error,
    }


class JsonLinesSink:
    """One JSON object per line, flushed per record so pipes see results as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, separators=(", ", ": ")) + "\n")
        self.stream.flush()


class AnnotatedMediaSink:
    """Annotated copies of the inputs under ``directory``: images as images, videos as .mp4."""

    def __init__(self, directory: Path, class_names: Sequence[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.class_names = class_names
        self._used: set[str] = set()
        self._writers: dict[str, cv2.VideoWriter] = {}
        self._names: dict[str, str] = {}
        self.written: list[Path] = []

    def _unique(self, source: str, suffix: str) -> str:
        if source in self._names:
            return self._names[source]
        stem = Path(source).stem if "://" not in source else "stream"
        stem = stem or "input"
        name, n = f"{stem}{suffix}", 1
        while name in self._used:
            name, n = f"{stem}_{n}{suffix}", n + 1
        self._used.add(name)
        self._names[source] = name
        return name

    def write(self, frame: Frame, detections: Detections) -> None:
        assert frame.image is not None
        image = frame.image if isinstance(frame.image, np.ndarray) else frame.image.cpu().numpy()  # GPU-decoded
        canvas = draw_detections(image, detections, self.class_names)
        if frame.index is None:
            suffix = Path(frame.name).suffix.lower()
            suffix = suffix if suffix in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
            path = self.directory / self._unique(frame.name, suffix)
            cv2.imwrite(str(path), canvas)
            self.written.append(path)
            return
        writer = self._writers.get(frame.name)
        if writer is None:
            path = self.directory / self._unique(frame.name, ".mp4")
            height, width = canvas.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 25.0, (width, height))
            self._writers[frame.name] = writer
            self.written.append(path)
        writer.write(np.ascontiguousarray(canvas))

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()
