"""Reading images from disk into HWC uint8 BGR arrays, with one-line errors for bad files."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trtdet.errors import CorruptImageWarning, InputError
from trtdet.io.image_header import declared_size
from trtdet.io.jpeg import decode_jpeg
from trtdet.io.limits import check_image_size


def _check_finite(image: np.ndarray, source: str) -> None:
    """``InputError`` when a float image has NaN or infinite pixels (counted in the message)."""
    finite = np.isfinite(image)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise InputError(source, f"{bad:,} pixel value(s) are NaN or infinite; a float image must be finite")


def to_bgr_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit or float images to HWC uint8 BGR (others pass through).

    The rule of ``cv2.imread(path)`` (and of Ultralytics for arrays): gray is repeated into
    three channels, alpha is dropped (not blended), 16-bit keeps its high byte (``v >> 8``).
    Float images in [0, 1] are scaled by 255, others taken as levels; both rounded and clipped.
    A float image holding NaN or infinite pixels is refused (``InputError`` naming it): there is
    no level such a pixel stands for, and one NaN would hide the image's range.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(source, f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(source, f"image has no pixels (shape {image.shape})")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        _check_finite(image, source)
        image = np.clip(image * (255.0 if image.max(initial=0) <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(source, f"unsupported pixel type {image.dtype}")
    if image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _truncated_jpeg(data: bytes) -> bool:
    """A JPEG must end with the end-of-image marker FFD9 (trailing padding allowed)."""
    return data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-64:]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HWC uint8 BGR; raise ``InputError`` naming the file and the problem.

    A file whose data is corrupt but still decodes warns with ``CorruptImageWarning``.
    """
    return decode_image_bytes(read_image_bytes(path), str(path))


def read_image_bytes(path: str | Path) -> bytes:
    """An image file's bytes, after the checks that need no decoding.

    Missing, empty, truncated and over-large files (by the size the header declares, see
    ``trtdet.io.limits``) are refused here, and so is anything that is not a regular file:
    a FIFO would block the read forever and a device such as ``/dev/zero`` never ends.
    """
    source = str(path)
    data = read_regular_file(path)
    if not data:
        raise InputError(source, "file is empty")
    if _truncated_jpeg(data):
        raise InputError(source, "truncated JPEG (no end-of-image marker)")
    check_declared_size(data, source)
    return data


def special_file_problem(mode: int) -> str | None:
    """Why a file of ``st_mode`` ``mode`` cannot be an input, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not an image"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else (
        "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file"
    )
    return f"is {kind}, not a regular file (only regular files, camera indexes and stream URLs are read)"


#: Image files larger than this are refused unread (2 GiB: more than any image trtdet can hold).
MAX_FILE_BYTES = 2**31


def read_regular_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; ``InputError`` otherwise.

    Opened without blocking and checked on the open descriptor, so a FIFO or device is
    refused without a single read (and without a race between the check and the read).
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise InputError(source, "file not found") from None
    except IsADirectoryError:
        raise InputError(source, "is a directory, not an image") from None
    except OSError as exc:
        raise InputError(source, f"cannot read file ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        problem = special_file_problem(info.st_mode)
        if problem is not None:
            raise InputError(source, problem)
        if info.st_size > max_bytes:
            raise InputError(source, f"file too large for an image ({info.st_size:,} bytes, over {max_bytes:,})")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return stream.read()
    except OSError as exc:
        raise InputError(source, f"cannot read file ({exc.strerror})") from None
    finally:
        os.close(fd)


def check_declared_size(data: bytes, source: str) -> None:
    """Refuse an image whose header declares more pixels than ``max_image_pixels()`` allows."""
    size = declared_size(data)
    if size is not None:
        check_image_size(source, *size)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image file: HWC uint8 BGR pixels and, when the data was damaged, the line saying so."""

    image: np.ndarray
    warning: str | None = None


def decode_image(data: bytes, source: str) -> DecodedImage:
    """Decode an image file's bytes into HWC uint8 BGR: the pixels ``cv2.imread(path)`` gives.

    ``IMREAD_COLOR``, as ``cv2.imread`` and Ultralytics read files: gray expanded, alpha and
    palettes resolved as OpenCV does, 16-bit reduced by OpenCV's decoder, EXIF orientation
    applied. Files ``IMREAD_COLOR`` refuses (e.g. float TIFFs) are read unchanged and converted
    by ``to_bgr_uint8``. The size the header declares is checked first, so a pixel bomb is
    refused before it is decoded. Plain JPEGs are decoded by ``trtdet.io.jpeg`` (the same
    libjpeg-turbo, same pixels) so that corrupt data libjpeg decodes anyway comes back as
    ``warning`` instead of a line OpenCV prints on stderr.
    """
    check_declared_size(data, source)
    jpeg = decode_jpeg(data, source) if data[:3] == b"\xff\xd8\xff" else None
    if jpeg is not None:
        image, warning = jpeg
    else:
        image, warning = _decode_with_opencv(data, source), None
    check_image_size(source, image.shape[1], image.shape[0])  # formats whose header was not read
    return DecodedImage(to_bgr_uint8(image, source), warning)


def _decode_with_opencv(data: bytes, source: str) -> np.ndarray:
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if image is None:
            image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(source, f"cannot decode image ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise InputError(source, "not a readable image (unknown format or corrupt data)")
    return image


def decode_image_bytes(data: bytes, source: str) -> np.ndarray:
    """``decode_image(data, source).image``; a warning about damaged data is a ``CorruptImageWarning``.

    For callers without a record to put the warning in (the Python API's paths, ``val``, ``bench``).
    """
    decoded = decode_image(data, source)
    if decoded.warning:
        warnings.warn(decoded.warning, CorruptImageWarning, stacklevel=2)
    return decoded.image
