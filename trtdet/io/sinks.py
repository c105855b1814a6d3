"""Writing results: detections as JSON lines, annotated images and videos."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from trtdet.detections import Detections
from trtdet.io.draw import draw
from trtdet.io.sources import Frame, Source


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

    def _unique(self, source: Source, suffix: str) -> Path:
        """The output path of ``source``: its path below the folder it was found in (just its
        name when given by name), with ``suffix``; ``_1``, ``_2``... when already taken."""
        if source.name in self._names:
            return self.directory / self._names[source.name]
        relative = Path(source.relative_name)
        stem = relative.stem or "input"
        name, n = (relative.parent / f"{stem}{suffix}").as_posix(), 1
        while name in self._used:
            name, n = (relative.parent / f"{stem}_{n}{suffix}").as_posix(), n + 1
        self._used.add(name)
        self._names[source.name] = name
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, frame: Frame, detections: Detections) -> Path:
        """Draw ``detections`` on the frame and write it; returns the image or video file written to."""
        assert frame.image is not None
        image = frame.image if isinstance(frame.image, np.ndarray) else frame.image.cpu().numpy()  # GPU-decoded
        canvas = draw(image, detections, self.class_names)
        if frame.index is None:
            suffix = Path(frame.name).suffix.lower()
            suffix = suffix if suffix in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
            path = self._unique(frame.source, suffix)
            cv2.imwrite(str(path), canvas)
            self.written.append(path)
            return path
        writer = self._writers.get(frame.name)
        path = self._unique(frame.source, ".mp4")
        if writer is None:
            height, width = canvas.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 25.0, (width, height))
            self._writers[frame.name] = writer
            self.written.append(path)
        writer.write(np.ascontiguousarray(canvas))
        return path

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()
