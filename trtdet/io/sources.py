"""Expanding ``--source`` arguments into frames: image files, directories, videos, cameras, streams."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trtdet.errors import InputError
from trtdet.io.gpu_jpeg import gpu_decodable
from trtdet.io.images import decode_image_bytes, read_image_bytes, to_bgr_uint8

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
    """An image to detect on, or the error that stopped it being read.

    ``image`` is HWC uint8 BGR: a numpy array, or a torch CUDA tensor when decoded on the GPU.
    """

    source: Source
    index: int | None
    image: np.ndarray | Any | None = None
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


class FrameReader:
    """Reads image files into frames; JPEGs on the GPU when given a ``CudaJpegDecoder``."""

    def __init__(self, jpeg_decoder: Any = None) -> None:
        self.jpeg_decoder = jpeg_decoder
        self._gpu_lock = threading.Lock()  # one nvJPEG batch at a time

    def read(self, sources: Sequence[Source]) -> list[Frame]:
        """One frame per source, in order: an image, or the one-line error of that file."""
        frames: list[Frame | None] = []
        for_gpu: list[tuple[int, Source, bytes]] = []
        for source in sources:
            try:
                data = read_image_bytes(source.name)
            except InputError as exc:
                frames.append(Frame(source, None, error=str(exc)))
                continue
            if self.jpeg_decoder is not None and gpu_decodable(data):
                for_gpu.append((len(frames), source, data))
                frames.append(None)
            else:
                frames.append(self._on_cpu(source, data))
        if for_gpu:
            with self._gpu_lock:
                images = self.jpeg_decoder.decode([(source.name, data) for _, source, data in for_gpu])
            for (index, source, data), image in zip(for_gpu, images, strict=True):
                frames[index] = Frame(source, None, image=image) if image is not None else self._on_cpu(source, data)
        return frames  # type: ignore[return-value]

    @staticmethod
    def _on_cpu(source: Source, data: bytes) -> Frame:
        try:
            return Frame(source, None, image=decode_image_bytes(data, source.name))
        except InputError as exc:
            return Frame(source, None, error=str(exc))


def iter_frames(
    sources: Sequence[Source], *, workers: int = 1, jpeg_decoder: Any = None, chunk: int = 4
) -> Iterator[Frame]:
    """Yield every frame of every source, in order; bad inputs yield one frame with ``error``.

    With ``workers`` > 1 image files are read ahead by that many threads, ``chunk`` files per
    task, while the caller works on earlier frames; video frames are decoded ahead on a thread.
    """
    reader = FrameReader(jpeg_decoder)
    if workers <= 1 and jpeg_decoder is None:
        for source in sources:
            if source.is_video_like:
                yield from _iter_video(source)
            else:
                yield from reader.read([source])
        return
    # Chunks read ahead: enough to keep every thread busy; GPU-decoded chunks hold device
    # memory and nvJPEG runs one batch at a time, so two of those are enough.
    depth = 2 if jpeg_decoder is not None else 2 * workers
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="trtdet-read") as pool:
        pending: deque[Future[list[Frame]]] = deque()
        group: list[Source] = []

        def flush() -> None:
            if group:
                pending.append(pool.submit(reader.read, list(group)))
                group.clear()

        for source in sources:
            if source.is_video_like:
                flush()
                while pending:
                    yield from pending.popleft().result()
                yield from _read_ahead(_iter_video(source), depth=64)
                continue
            group.append(source)
            if len(group) >= chunk:
                flush()
            while len(pending) > depth:
                yield from pending.popleft().result()
        flush()
        while pending:
            yield from pending.popleft().result()


_DONE = object()


def _read_ahead(frames: Iterator[Frame], depth: int) -> Iterator[Frame]:
    """Run ``frames`` on a thread, at most ``depth`` frames ahead of the consumer."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            buffer.put(exc)
        finally:
            frames.close()  # type: ignore[attr-defined]
            buffer.put(_DONE)

    thread = threading.Thread(target=produce, name="trtdet-video", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)
