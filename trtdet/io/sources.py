"""Expanding ``--source`` arguments into frames: image files, directories, videos, cameras, streams."""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
import queue
import stat
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trtdet.errors import InputError
from trtdet.io.gpu_jpeg import gpu_decodable
from trtdet.io.image_header import declared_size
from trtdet.io.images import decode_image, read_image_bytes, special_file_problem, to_bgr_uint8
from trtdet.io.limits import positive_int_setting

#: Image formats OpenCV's imread decodes (its documented list; AVIF where built with it).
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".jp2", ".avif",
    ".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".exr", ".hdr", ".pic",
})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is ``image``, ``video``, ``camera`` or ``stream``.

    ``problem`` is set when the argument named nothing usable (a glob matching no file): the
    input is reported with it instead of being read. ``root`` is the directory (or the glob's
    fixed part) the file was found under, if any: ``trtdet run --output`` mirrors the path
    below it.
    """

    name: str
    kind: str
    problem: str | None = None
    root: str | None = None

    @property
    def relative_name(self) -> str:
        """The path below ``root`` (the file name for a file given by name)."""
        if self.root is not None:
            try:
                return Path(self.name).relative_to(self.root).as_posix()
            except ValueError:
                pass
        return Path(self.name).name if "://" not in self.name else "stream"

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
    #: A problem that did not stop the frame being used (e.g. dropped non-finite detections).
    warning: str | None = None

    @property
    def name(self) -> str:
        return self.source.name


#: What ``detector.stream`` and ``collect_sources`` take: one argument or a list of them.
SourceArguments = str | os.PathLike | int | Sequence[str | os.PathLike | int]


@dataclass
class CollectedSources:
    """The inputs the arguments named, and the files of directories/globs skipped by extension."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def _classify(path: Path, root: Path | None = None) -> Source:
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
    return Source(str(path), kind, root=None if root is None else str(root))


def is_media_file(path: Path) -> bool:
    """True for a file whose extension is an image or video format (how folders are filtered)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES


def _is_glob(argument: str) -> bool:
    return glob.has_magic(argument)


def _glob_root(pattern: str) -> Path:
    """The part of a glob pattern before its first wildcard component."""
    parts = Path(pattern).parts
    fixed = [part for part in itertools.takewhile(lambda p: not glob.has_magic(p), parts)]
    return Path(*fixed) if fixed else Path(".")


def _glob_children(directory: Path, part: str) -> list[Path]:
    """Entries of ``directory`` matching one wildcard component (dot names only for a dot pattern)."""
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
    except OSError:
        return []
    hidden_ok = part.startswith(".")
    return [directory / name for name in names if (hidden_ok or not name.startswith(".")) and fnmatch.fnmatchcase(name, part)]


def _glob_below(directory: Path) -> list[Path]:
    """``directory`` and everything below it (``**``), hidden names left out, directory links not followed."""
    found = [directory]
    for top, folders, files in os.walk(directory, followlinks=False):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found.extend(Path(top) / name for name in folders + files if not name.startswith("."))
    return found


def _is_real_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def glob_files(pattern: str) -> list[Path]:
    """The paths ``pattern`` matches, sorted, as ``glob.glob(pattern, recursive=True)`` finds them --
    except that no directory reached through a wildcard is entered through a symbolic link.

    ``glob.glob`` follows directory links, so a ``**`` under a link pointing back up the tree
    goes round the loop and yields the same files many times (82 records from 2 files). Folders
    given as ``--source DIR`` already leave links alone; a glob now does too. The pattern's fixed
    part (``_glob_root``) is taken as written, links included.
    """
    root = _glob_root(pattern)
    parts = Path(pattern).parts[len(root.parts):]
    candidates = [root]
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        matched: list[Path] = []
        for candidate in candidates:
            if part == "**":
                matched.extend(_glob_below(candidate) if candidate.is_dir() else [])
            elif glob.has_magic(part):
                matched.extend(_glob_children(candidate, part))
            elif os.path.lexists(candidate / part):
                matched.append(candidate / part)
        if not last:  # a wildcard's match is entered only when it is a real directory
            wild = part == "**" or glob.has_magic(part)
            matched = [path for path in matched if (_is_real_directory(path) if wild else path.is_dir())]
        candidates = list(dict.fromkeys(matched))
    return sorted(candidates)


def _add_found(found: CollectedSources, files: Sequence[Path], root: Path) -> None:
    for path in files:
        if path.name.startswith("."):
            continue
        if is_media_file(path):
            found.sources.append(_classify(path, root))
        else:
            found.skipped.append(path)


def _directory_files(directory: Path) -> list[Path]:
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(directory).parts)  # noqa: E731
    return sorted(p for p in directory.rglob("*") if p.is_file() and not hidden(p))


def collect_sources(arguments: SourceArguments) -> CollectedSources:
    """Turn source arguments (as ``--source`` takes them) into sources, in order.

    A digit string or int is a camera, ``scheme://...`` a stream. A directory gives its image
    and video files (by extension, recursively, sorted; hidden files and folders left out), a
    glob pattern (``photos/*.png``; ``**`` recursive) the matching image and video files; the
    other files they hold are counted in ``skipped``. A file named explicitly is always an
    input, reported as bad when it cannot be read; a glob matching nothing is one bad input.
    """
    if isinstance(arguments, (str, os.PathLike, int)):
        arguments = [arguments]
    found = CollectedSources()
    for raw in arguments:
        argument = str(raw) if isinstance(raw, int) else os.fspath(raw)
        if argument.isdigit():
            found.sources.append(Source(argument, "camera"))
        elif "://" in argument:
            found.sources.append(Source(argument, "stream"))
        else:
            path = Path(argument)
            if path.is_dir():
                _add_found(found, _directory_files(path), path)
            elif not path.exists() and _is_glob(argument):
                matches = glob_files(argument)
                if not matches:
                    found.sources.append(Source(argument, "image", problem="no file matches this pattern"))
                _add_found(found, [match for match in matches if match.is_file()], _glob_root(argument))
            else:
                found.sources.append(_classify(path))
    return found


def expand_sources(arguments: SourceArguments) -> list[Source]:
    """The sources of ``collect_sources(arguments)`` (the files skipped by extension left out)."""
    return collect_sources(arguments).sources


def count_frames(sources: Sequence[Source]) -> int | None:
    """Frames the sources will yield, for a progress bar (None when a camera/stream is open-ended)."""
    total = 0
    for source in sources:
        if source.kind == "image":
            total += 1
        elif source.kind == "video":
            if video_file_problem(source.name) is not None:
                total += 1  # reported as one failed input
                continue
            capture = _open_quietly(source.name)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            capture.release()
            total += max(count, 1)
        else:
            return None
    return total


#: FFmpeg's log level inside OpenCV (AV_LOG_QUIET): trtdet reports a failed open or read itself.
FFMPEG_QUIET = "-8"


def _open_quietly(target: int | str) -> cv2.VideoCapture:
    """``cv2.VideoCapture(target)`` without OpenCV's and FFmpeg's own warnings on stderr.

    OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` when FFmpeg is first used (a value the user set
    is kept); its own logging is silenced while the capture opens.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(target)
    finally:
        logging.setLogLevel(previous)


def video_file_problem(path: str) -> str | None:
    """Why a video path cannot be opened (missing, or not a regular file), or None.

    OpenCV would block forever on a FIFO and read a device such as /dev/zero without end.
    """
    try:
        return special_file_problem(os.stat(path).st_mode)
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read file ({exc.strerror})"


def _iter_video(source: Source) -> Iterator[Frame]:
    problem = video_file_problem(source.name) if source.kind == "video" else None
    if problem is not None:
        yield Frame(source, None, error=InputError(source.name, problem).args[0])
        return
    target = int(source.name) if source.kind == "camera" else source.name
    capture = _open_quietly(target)
    if not capture.isOpened():
        what = {"camera": "cannot open camera", "stream": "cannot open stream"}.get(source.kind, "cannot open video")
        yield Frame(source, None, error=f"{source.name}: {what}")
        return
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == "video" else 0
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
    elif 0 < index < declared:  # a file (not a camera or stream) that stopped before its end
        yield Frame(
            source, None,
            error=f"{source.name}: video ended early: {index} of the {declared} frames its container declares "
            "were readable (truncated or corrupt file)",
        )


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
            if source.problem is not None:
                frames.append(Frame(source, None, error=f"{source.name}: {source.problem}"))
                continue
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
            decoded = decode_image(data, source.name)
        except InputError as exc:
            return Frame(source, None, error=str(exc))
        return Frame(source, None, image=decoded.image, warning=decoded.warning)


#: Bytes of images held by the read-ahead (encoded and decoded) unless told otherwise.
DEFAULT_READ_AHEAD_BYTES = 512 * 2**20
#: The environment variable that sets it (``trtdet run`` reads it).
ENV_READ_AHEAD_BYTES = "TRTDET_READ_AHEAD_BYTES"


def read_ahead_bytes() -> int:
    """The read-ahead's byte budget: ``TRTDET_READ_AHEAD_BYTES`` or 512 MiB."""
    return positive_int_setting(ENV_READ_AHEAD_BYTES, DEFAULT_READ_AHEAD_BYTES, "bytes")


class ByteBudget:
    """Bytes in flight between a producer and its consumer, at most ``limit`` of them.

    One item larger than the whole budget is still let through when nothing else is in
    flight, so a single huge image never deadlocks the reader.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    def _fits(self, nbytes: int) -> bool:
        return self.used == 0 or self.used + nbytes <= self.limit

    def try_acquire(self, nbytes: int) -> bool:
        with self._changed:
            if not self._fits(nbytes):
                return False
            self.used += nbytes
            return True

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        """Wait until ``nbytes`` fit; False if ``stop`` was set first."""
        with self._changed:
            while not self._fits(nbytes):
                if stop.is_set():
                    return False
                self._changed.wait(0.1)
            self.used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._changed:
            self.used -= nbytes
            self._changed.notify_all()


def _frame_bytes(frame: Any) -> int:
    image = getattr(frame, "image", None)
    return int(getattr(image, "nbytes", 0) or 0) if image is not None else 0


def iter_frames(
    sources: Sequence[Source],
    *,
    workers: int = 1,
    jpeg_decoder: Any = None,
    chunk: int = 4,
    max_bytes: int | None = None,
) -> Iterator[Frame]:
    """Yield every frame of every source, in order; bad inputs yield one frame with ``error``.

    With ``workers`` > 1 image files are read ahead by that many threads, ``chunk`` files per
    task, while the caller works on earlier frames; video frames are decoded ahead on a thread.
    What is read ahead is bounded by bytes, not by count: at most ``max_bytes`` (default
    ``read_ahead_bytes()``) of files and decoded images are held for the caller at a time,
    counted from each file's size and the pixels its header declares before it is read, so
    memory stays flat whatever the images' sizes (one image over the budget is read alone).
    """
    reader = FrameReader(jpeg_decoder)
    budget = ByteBudget(max_bytes if max_bytes is not None else read_ahead_bytes())
    if workers <= 1 and jpeg_decoder is None:
        for source in sources:
            if source.is_video_like:
                yield from _iter_video(source)
            else:
                yield from reader.read([source])
        return
    # Chunks read ahead: enough to keep every thread busy, within the byte budget; GPU-decoded
    # chunks hold device memory and nvJPEG runs one batch at a time, so two of those are enough.
    depth = 2 if jpeg_decoder is not None else 2 * workers
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="trtdet-read") as pool:
        pending: deque[tuple[Future[list[Frame]], int]] = deque()
        group: list[Source] = []
        group_bytes = 0

        def flush() -> None:
            nonlocal group_bytes
            if group:
                pending.append((pool.submit(reader.read, list(group)), group_bytes))
                group.clear()
                group_bytes = 0

        def oldest() -> Iterator[Frame]:
            """The oldest chunk's frames; its bytes leave the budget once the caller took them all."""
            future, nbytes = pending.popleft()
            try:
                yield from future.result()
            finally:
                budget.release(nbytes)

        for source in sources:
            if source.is_video_like:
                flush()
                while pending:
                    yield from oldest()
                yield from _read_ahead(_iter_video(source), depth=64, budget=budget)
                continue
            cost = estimated_bytes(source.name)
            while not budget.try_acquire(cost):  # over budget: hand the caller what is read first
                if group:
                    flush()
                yield from oldest()
            group.append(source)
            group_bytes += cost
            if len(group) >= chunk:
                flush()
            while len(pending) > depth:
                yield from oldest()
        flush()
        while pending:
            yield from oldest()


def estimated_bytes(path: str) -> int:
    """What reading ``path`` will hold: its size on disk plus its decoded BGR pixels (header-declared).

    Files whose header is not one ``declared_size`` reads count eight times their size (a
    typical JPEG ratio); unreadable files count nothing (they become an error line).
    """
    try:
        info = os.stat(path)
    except OSError:
        return 0
    if not stat.S_ISREG(info.st_mode):
        return 0
    try:
        with open(path, "rb") as stream:
            head = stream.read(64 * 1024)
            size = declared_size(head)
            if size is None and head[:2] == b"\xff\xd8" and info.st_size > len(head):  # SOF after big EXIF/ICC
                size = declared_size(head + stream.read(1024 * 1024))
    except OSError:
        return info.st_size
    decoded = 3 * size[0] * size[1] if size is not None else 8 * info.st_size
    return info.st_size + decoded


_DONE = object()


def _read_ahead(frames: Iterator[Frame], depth: int, budget: ByteBudget | None = None) -> Iterator[Frame]:
    """Run ``frames`` on a thread, at most ``depth`` frames (and ``budget`` bytes) ahead of the consumer."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                nbytes = _frame_bytes(frame)
                if budget is not None and not budget.acquire(nbytes, stop):
                    break
                while not stop.is_set():
                    try:
                        buffer.put((frame, nbytes), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            buffer.put((exc, 0))
        finally:
            frames.close()  # type: ignore[attr-defined]
            buffer.put((_DONE, 0))

    thread = threading.Thread(target=produce, name="trtdet-video", daemon=True)
    thread.start()
    try:
        while True:
            item, nbytes = buffer.get()
            if budget is not None and nbytes:
                budget.release(nbytes)
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                item, nbytes = buffer.get_nowait()
                if budget is not None and nbytes:
                    budget.release(nbytes)
            except queue.Empty:
                thread.join(0.05)
