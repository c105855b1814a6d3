"""Expanding ``--source`` arguments into frames: image files, directories, videos, cameras, streams."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trtdet.errors import InputError
from trtdet.io.images import read_image, to_bgr_uint8

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is ``image``, ``video``, ``camera`` or ``stream``."""

    name: str
    kind: str

    @property
    def is_video_like(self) -> bool:
        return self.kind in ("video", "camera", "stream")


@dataclass
class Frame:
    """An image to detect on, or the error that stopped it being read."""

    source: Source
    index: int | None
    image: np.ndarray | None = None
    error: str | None = None
    fps: float | None = None

    @property
    def name(self) -> str:
        return self.source.name


def _classify(path: Path) -> Source:
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
    return Source(str(path), kind)


def expand_sources(arguments: Sequence[str]) -> list[Source]:
    """Turn CLI source arguments into sources; directories expand to their files, sorted.

    Every file of a directory becomes a source (hidden files aside), so a stray text file is
    reported as a bad input rather than silently skipped.
    """
    sources: list[Source] = []
    for argument in arguments:
        if argument.isdigit():
            sources.append(Source(argument, "camera"))
        elif "://" in argument:
            sources.append(Source(argument, "stream"))
        else:
            path = Path(argument)
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                sources.extend(_classify(p) for p in files)
            else:
                sources.append(_classify(path))
    return sources


def count_frames(sources: Sequence[Source]) -> int | None:
    """Frames the sources will yield, for a progress bar (None when a camera/stream is open-ended)."""
    total = 0
    for source in sources:
        if source.kind == "image":
            total += 1
        elif source.kind == "video":
            capture = cv2.VideoCapture(source.name)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            capture.release()
            total += max(count, 1)
        else:
            return None
    return total


def _iter_video(source: Source) -> Iterator[Frame]:
    if source.kind == "video" and not Path(source.name).is_file():
        yield Frame(source, None, error=InputError(source.name, "file not found").args[0])
        return
    target = int(source.name) if source.kind == "camera" else source.name
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        what = {"camera": "cannot open camera", "stream": "cannot open stream"}.get(source.kind, "cannot open video")
        yield Frame(source, None, error=f"{source.name}: {what}")
        return
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(source, index, image=to_bgr_uint8(image, f"{source.name}#{index}"), fps=fps)
            index += 1
    finally:
        capture.release()
    if index == 0:
        yield Frame(source, None, error=f"{source.name}: video has no readable frames")


def iter_frames(sources: Sequence[Source]) -> Iterator[Frame]:
    """Yield every frame of every source, in order; bad inputs yield one frame with ``error``."""
    for source in sources:
        if source.is_video_like:
            yield from _iter_video(source)
            continue
        try:
            yield Frame(source, None, image=read_image(source.name))
        except InputError as exc:
            yield Frame(source, None, error=str(exc))
