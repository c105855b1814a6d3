"""The inputs of ``trtdet batch``: listing sources (local paths, globs, pyarrow filesystem URIs) and reading them.

Listing runs on the driver and never fails on a bad argument: a missing file, a video or a
camera becomes an input that already carries its one-line error, so it is reported in the
output like any other input. Reading and decoding run in Ray tasks on CPUs
(``read_batch``), each bad image becoming a row with ``error`` set instead of a failed task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from trtdet.errors import InputError
from trtdet.io.images import decode_image, read_image_bytes
from trtdet.io.sources import collect_sources, is_media_file
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import pyarrow.fs as pafs
else:
    pafs = lazy_import("pyarrow.fs")

#: Where an input has no image: a 0x0 image keeps the column one (variable-shaped) tensor type.
NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


@dataclass(frozen=True)
class Input:
    """One input: its ``source`` name (as records report it) and an ``error`` found while listing."""

    source: str
    error: str | None = None


def is_uri(text: str) -> bool:
    """Whether ``text`` names a file through a filesystem URI (``s3://``, ``gs://``, ``file://``...)."""
    return "://" in text


@dataclass
class InputListing:
    """The inputs ``--source`` arguments name, and how many files of their folders were skipped."""

    inputs: list[Input]
    #: Files in folders, globs and URI folders that are not images or videos (as ``trtdet run`` skips them).
    skipped: int = 0


def _list_uri(uri: str) -> InputListing:
    """The image and video files under a filesystem URI (recursively for a directory), or the error saying why not."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: one line either way
        return InputListing([Input(uri, f"{uri}: cannot open ({_first_line(exc)})")])
    if info.type == pafs.FileType.NotFound:
        return InputListing([Input(uri, f"{uri}: file not found")])
    if info.type == pafs.FileType.File:
        return InputListing([Input(uri)])
    scheme = uri.split("://", 1)[0]
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(f.path for f in found if f.type == pafs.FileType.File and not f.base_name.startswith("."))
    media = [name for name in files if is_media_file(Path(name))]
    return InputListing([Input(f"{scheme}://{name}") for name in media], skipped=len(files) - len(media))


def collect_inputs(arguments: Iterable[str]) -> InputListing:
    """Every input the ``--source`` arguments name, in order, each listed once; and the files skipped.

    Local paths expand as ``trtdet run`` expands them (a directory to its image and video files,
    sorted; a glob to its matching ones; other files counted as skipped) and so carry the same
    source names; a URI is listed through pyarrow's filesystems, its folders filtered alike.
    Videos, cameras and streams get an error: ``trtdet batch`` detects on still images
    (``trtdet run`` takes the others).
    """
    inputs: list[Input] = []
    skipped = 0
    for argument in arguments:
        if is_uri(argument):
            listed = _list_uri(argument)
            inputs.extend(listed.inputs)
            skipped += listed.skipped
            continue
        collected = collect_sources([argument])
        skipped += len(collected.skipped)
        for source in collected.sources:
            if source.problem is not None:
                inputs.append(Input(source.name, f"{source.name}: {source.problem}"))
            elif source.kind == "image":
                inputs.append(Input(source.name))
            else:
                inputs.append(Input(source.name, f"{source.name}: a {source.kind} (trtdet batch reads images; use trtdet run)"))
    seen: set[str] = set()
    unique = []
    for item in inputs:
        if item.source not in seen:
            seen.add(item.source)
            unique.append(item)
    return InputListing(unique, skipped)


def list_inputs(arguments: Iterable[str]) -> list[Input]:
    """The inputs of ``collect_inputs(arguments)`` (the skipped files left out)."""
    return collect_inputs(arguments).inputs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_source_bytes(source: str) -> bytes:
    """The bytes of one input, local or through a pyarrow filesystem; ``InputError`` when unreadable."""
    if not is_uri(source):
        return read_image_bytes(source)

    try:
        fs, path = pafs.FileSystem.from_uri(source)
        with fs.open_input_file(path) as handle:
            data = handle.read()
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except FileNotFoundError as exc:
        raise InputError(source, "file not found") from exc
    except Exception as exc:
        raise InputError(source, f"cannot read file ({_first_line(exc)})") from exc
    if not data:
        raise InputError(source, "file is empty")
    return data


class DecodedSource(NamedTuple):
    """One input read and decoded: the image (HWC uint8 BGR) or the one-line error, and any warning."""

    image: np.ndarray | None
    error: str | None
    #: Damaged data that still decoded (``trtdet.io.images.decode_image``): the record says so.
    warning: str | None = None


def decode_source(source: str, data: bytes | None = None) -> DecodedSource:
    """``(image, None, warning or None)``, or ``(None, the one-line error, None)`` -- never raises for a bad input."""
    try:
        if data is None:
            data = read_source_bytes(source)
        decoded = decode_image(bytes(data), source)
        return DecodedSource(decoded.image, None, decoded.warning)
    except InputError as exc:
        return DecodedSource(None, str(exc))
    except Exception as exc:  # a decoder failure of any other kind still fails this input only
        return DecodedSource(None, f"{source}: cannot decode image ({_first_line(exc)})")


def read_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Ray Data task: ``{"source", "error"}`` rows -> ``{"source", "image", "error", "warning"}`` (decoded, BGR).

    Rows listed with an error keep it; rows that fail to read or decode get theirs; images
    decoded from damaged data carry the warning on to their records.
    """
    images, errors, warnings = [], [], []
    for source, listed_error in zip(batch["source"], batch["error"], strict=True):
        if isinstance(listed_error, str) and listed_error:
            images.append(NO_IMAGE)
            errors.append(str(listed_error))
            warnings.append(None)
            continue
        image, error, warning = decode_source(str(source))
        images.append(NO_IMAGE if image is None else image)
        errors.append(error)
        warnings.append(warning)
    return {"source": batch["source"], "image": images, "error": np.array(errors, dtype=object),
            "warning": np.array(warnings, dtype=object)}


def local_name(source: str) -> str:
    """A file name for an annotated copy of ``source``: its stem plus a short hash of the full name."""
    import hashlib

    name = source.rsplit("/", 1)[-1] if is_uri(source) else Path(source).name
    stem, suffix = Path(name).stem or "input", Path(name).suffix.lower()
    suffix = suffix if suffix in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
    return f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:10]}{suffix}"
