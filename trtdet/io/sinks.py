"""Writing results: detections as JSON lines, annotated images and videos."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from trtdet.detections import Detections
from trtdet.errors import InputError, UsageError
from trtdet.io.draw import draw
from trtdet.io.sources import Frame, Source


def frame_record(frame: Frame, detections: Detections | None, class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON-lines record of one image or video frame (DESIGN.md's contract)."""
    height, width = (frame.image.shape[:2] if frame.image is not None else (None, None))
    record = {
        "source": frame.name,
        "frame": frame.index,
        "width": width,
        "height": height,
        "detections": detections.to_records(class_names) if detections is not None else [],
        "error": frame.error,
    }
    if frame.warning:  # only when there is one: records of clean inputs keep the documented shape
        record["warning"] = frame.warning
    return record


class JsonLinesSink:
    """One JSON object per line, each written whole and flushed as it comes (pipes see results live).

    On a file descriptor (a file ``open_file`` opened, or a real stdout) every line is written
    with ``os.write`` until done; a write that fails (a full disk) cuts a regular file back to
    the end of the last whole record before the ``OSError`` is raised, so the file never holds
    half a record. ``written`` counts the records written whole.
    """

    def __init__(self, stream: IO[str] | IO[bytes]) -> None:
        self.stream = stream
        self.written = 0
        self._fd: int | None = None
        self._end = 0  # offset after the last whole record (regular files)
        self._regular = False
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
            return
        stream.flush()  # whatever the stream holds goes before the first record
        self._fd = fd
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if self._regular:  # appending (>>) writes at the end whatever the offset says
            appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            self._end = os.fstat(fd).st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)

    @classmethod
    def open_file(cls, path: str | Path) -> JsonLinesSink:
        """A sink writing to a new (or emptied) file at ``path``; ``close()`` closes it."""
        return cls(open(path, "wb", buffering=0))  # noqa: SIM115 - closed by close()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(", ", ": ")) + "\n"
        if self._fd is None:
            self.stream.write(line)  # type: ignore[arg-type]
            self.stream.flush()
        else:
            self._write_whole(line.encode("utf-8"))
        self.written += 1

    def _write_whole(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BaseException:  # OSError (a full disk), or Ctrl-C between two partial writes
            if self._regular:
                with contextlib.suppress(OSError):
                    size = os.fstat(self._fd).st_size
                    if self._end <= size < self._end + len(data):  # only this record's part, nobody else's
                        os.ftruncate(self._fd, self._end)
                        os.lseek(self._fd, self._end, os.SEEK_SET)
            raise
        self._end += len(data)

    def close(self) -> None:
        """Close the stream if ``open_file`` opened it (stdout stays open)."""
        if isinstance(self.stream, io.FileIO):
            self.stream.close()


def prepare_output_directory(directory: str | Path) -> Path:
    """Create ``directory`` if needed and prove a file can be written there; ``UsageError`` if not.

    Called before the model loads, so an unusable ``--output`` costs one line and nothing else.
    Temporaries a killed earlier run left there are removed (``remove_stale_temporaries``).
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--output {directory}: exists and is not a directory") from None
    except OSError as exc:
        raise UsageError(f"--output {directory}: cannot create the directory ({exc.strerror})") from None
    if not path.is_dir():
        raise UsageError(f"--output {directory}: exists and is not a directory")
    remove_stale_temporaries(path)  # a killed run's half-written videos and images
    try:
        os.unlink(make_temporary(path, ".probe"))
    except OSError as exc:
        raise UsageError(f"--output {directory}: cannot write there ({exc.strerror})") from None
    return path


def check_writable_file(path: str | Path, flag: str = "--json") -> None:
    """``UsageError`` unless ``path`` can be opened for writing (checked without touching an existing file)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{flag} {path}: cannot write the file (permission denied)")
        return
    parent = target.parent
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: the folder {parent} {problem}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot create a file in {parent} (permission denied)")


#: Temporary files of annotated outputs are named ``.trtdet-tmp-<pid>-<random><suffix>`` beside
#: their final name, so a later run can tell its own leftovers (a SIGKILLed run's) from anything else.
TEMPORARY_PREFIX = ".trtdet-tmp-"
_TEMPORARY_NAME = re.compile(r"\.trtdet-tmp-(\d+)-[A-Za-z0-9_]{8}\.[A-Za-z0-9]{1,8}")


def make_temporary(directory: Path, suffix: str) -> str:
    """A new empty temporary file in ``directory`` named by ``TEMPORARY_PREFIX`` and this process's id."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", suffix=suffix)
    os.close(fd)
    return temporary


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries a killed trtdet run left below ``directory``; returns those removed.

    Only regular files named as ``make_temporary`` names them whose process is gone are touched
    (the files of a run still writing, and every other file, are left alone); links are not followed.
    """
    removed: list[Path] = []
    for top, _folders, files in os.walk(directory, followlinks=False):
        for name in files:
            match = _TEMPORARY_NAME.fullmatch(name)
            if match is None or _process_alive(int(match.group(1))):
                continue
            path = Path(top) / name
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
    return removed


#: The process's umask, so files renamed into place get the mode a plain ``open`` would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file beside it, then rename it into place.

    Renaming replaces whatever has the name -- a symlink included -- so a planted link never
    redirects the write, and readers never see half a file. ``write`` fills the temporary
    file (whose name is plain ASCII: OpenCV's writers cannot take every file name).
    """
    temporary = make_temporary(path.parent, path.suffix)
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's file is private (0600)
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _display(path: Path) -> str:
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


class AnnotatedMediaSink:
    """Annotated copies of the inputs under ``directory``: images as images, videos as .mp4.

    Files are written through a temporary file and a rename (``replace_atomically``), with
    OpenCV only encoding (``cv2.imencode``) and Python writing the bytes, so any file name
    the input had -- not valid UTF-8 included -- is kept as it is. A write that fails raises
    ``InputError`` for that input.
    """

    def __init__(self, directory: Path, class_names: Sequence[str], *, file: Path | None = None) -> None:
        """``file``: write the one input's annotated copy to exactly this path (``--output NAME.jpg``)."""
        self.directory = Path(directory) if file is None else Path(file).parent
        self.directory.mkdir(parents=True, exist_ok=True)
        self.file = None if file is None else Path(file)
        self.class_names = class_names
        self._used: set[str] = set()
        self._writers: dict[str, tuple[cv2.VideoWriter, Path, Path]] = {}
        self._names: dict[str, str] = {}
        self._unwritable: set[str] = set()  # videos whose writer could not be opened
        self.written: list[Path] = []

    def _unique(self, source: Source, suffix: str) -> Path:
        """The output path of ``source``: its path below the folder it was found in (just its
        name when given by name), with ``suffix``; ``_1``, ``_2``... when already taken."""
        if source.name in self._names:
            return self.directory / self._names[source.name]
        if self.file is not None:
            self._names[source.name] = self.file.name
            return self.file
        relative = Path(source.relative_name)
        stem = relative.stem or "input"
        name, n = (relative.parent / f"{stem}{suffix}").as_posix(), 1
        while name in self._used:
            name, n = (relative.parent / f"{stem}_{n}{suffix}").as_posix(), n + 1
        self._used.add(name)
        self._names[source.name] = name
        path = self.directory / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(source.name, f"cannot write {_display(path)} ({exc.strerror})") from None
        return path

    def write(self, frame: Frame, detections: Detections) -> Path | None:
        """Draw ``detections`` on the frame and write it; returns the image or video file written
        to (None for a frame of a video whose writer could not open, reported once already)."""
        assert frame.image is not None
        image = frame.image if isinstance(frame.image, np.ndarray) else frame.image.cpu().numpy()  # GPU-decoded
        canvas = draw(image, detections, self.class_names)
        if frame.index is None:
            suffix = Path(frame.name if self.file is None else self.file).suffix.lower()
            suffix = suffix if suffix in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
            path = self._unique(frame.source, suffix)
            self._write_image(frame.name, path, canvas)
            self.written.append(path)
            return path
        if frame.name in self._unwritable:  # already reported once for this video
            return None
        entry = self._writers.get(frame.name)
        if entry is None:
            try:
                entry = self._open_video(frame, canvas.shape[:2])
            except InputError:
                self._unwritable.add(frame.name)
                raise
        entry[0].write(np.ascontiguousarray(canvas))
        return entry[2]

    def _write_image(self, source: str, path: Path, canvas: np.ndarray) -> None:
        ok, encoded = cv2.imencode(path.suffix, canvas)
        if not ok:
            raise InputError(source, f"cannot encode the annotated image as {path.suffix}")
        try:
            replace_atomically(path, lambda temporary: temporary.write_bytes(encoded.tobytes()))
        except OSError as exc:
            raise InputError(source, f"cannot write {_display(path)} ({exc.strerror})") from None

    def _open_video(self, frame: Frame, size: tuple[int, int]) -> tuple[cv2.VideoWriter, Path, Path]:
        path = self._unique(frame.source, ".mp4")
        try:
            temporary = make_temporary(path.parent, ".mp4")
            os.chmod(temporary, 0o666 & ~_UMASK)
        except OSError as exc:
            raise InputError(frame.name, f"cannot write {_display(path)} ({exc.strerror})") from None
        height, width = size
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 25.0, (width, height))
        if not writer.isOpened():
            os.unlink(temporary)
            raise InputError(frame.name, f"cannot write {_display(path)} (OpenCV cannot open an mp4v video writer)")
        entry = (writer, Path(temporary), path)
        self._writers[frame.name] = entry
        self.written.append(path)
        return entry

    def close(self) -> list[InputError]:
        """Finish every video (renamed into place); returns the errors of those that could not be."""
        errors: list[InputError] = []
        for source, (writer, temporary, path) in self._writers.items():
            writer.release()
            try:
                os.replace(temporary, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                errors.append(InputError(source, f"cannot write {_display(path)} ({exc.strerror})"))
        self._writers.clear()
        return errors
