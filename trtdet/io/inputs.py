"""What the Python API accepts as an image: arrays, file paths and PIL images, one or a list.

Paths are read exactly as ``trtdet run`` reads files (``trtdet.io.images.read_image``), URLs
(``scheme://...``) by its stream reader (the first frame); PIL
images are converted from RGB to the HWC uint8 BGR the pipeline takes; arrays pass as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from trtdet.errors import InputError
from trtdet.io.images import read_image, to_bgr_uint8
from trtdet.io.limits import check_image_size

#: One image as the API takes it: an HWC uint8 BGR array, a file path, or a PIL image.
ImageInput = np.ndarray | str | os.PathLike | Any


def _is_pil(value: object) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("PIL.") and hasattr(value, "convert") and hasattr(value, "mode")


def is_path_or_pil(value: object) -> bool:
    """True for a file path (``str`` or path-like) or a PIL image: inputs ``as_image`` reads."""
    return isinstance(value, (str, os.PathLike)) or _is_pil(value)


def is_single_image(value: object) -> bool:
    """True when ``value`` is one image (not a list of them)."""
    if isinstance(value, np.ndarray):
        return value.ndim in (2, 3)
    return isinstance(value, (str, os.PathLike)) or _is_pil(value)


def as_image(value: ImageInput) -> np.ndarray:
    """``value`` as an HWC uint8 BGR array; a path or a PIL image is read/converted first.

    Raises ``InputError`` naming the input when it cannot be used.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, str) and "://" in text:
            return read_url(text)
        if not text:
            raise InputError("''", "empty path; expected an image file path, a URL or an array")
        path = Path(value)
        if path.is_dir():
            raise InputError(str(path), "is a directory; use detector.stream(path) for folders and videos")
        return read_image(path)
    if _is_pil(value):
        return _from_pil(value)
    raise InputError(repr(value)[:60], f"expected an image array, a file path or a PIL image, got {type(value).__name__}")


def read_url(url: str) -> np.ndarray:
    """The first frame at ``url``, read by the stream reader ``trtdet run --source URL`` uses.

    An image URL gives that image; a video or live stream gives its first frame (use
    ``detector.stream(url)`` for every frame). ``InputError`` naming the URL when nothing is read.
    """
    from trtdet.io.sources import Source, iter_frames

    frames = iter_frames([Source(url, "stream")])
    try:
        frame = next(frames)
    finally:
        frames.close()  # type: ignore[attr-defined]
    if frame.error is not None:
        raise InputError(url, frame.error.removeprefix(f"{url}: "))
    assert frame.image is not None
    return frame.image


def _from_pil(image: Any) -> np.ndarray:
    """A PIL image as BGR: palette, gray+alpha, CMYK and the rest through RGB, 16-bit gray scaled."""
    source = f"PIL image {getattr(image, 'filename', '') or ''}".strip()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(image)
        if image.mode == "I":
            gray = np.clip(gray, 0, 65535)
        return to_bgr_uint8(gray.astype(np.uint16), source)
    if image.mode == "L":
        return to_bgr_uint8(np.asarray(image), source)
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def as_bgr_image(image: Any, index: int = 0) -> Any:
    """``image`` as the pipeline takes it: HWC uint8 BGR, contiguous, within the size limit.

    Paths and PIL images go through ``as_image``; grayscale (HxW or HxWx1), BGRA, 16-bit and
    float arrays are converted by the rules files are read with (``to_bgr_uint8``); torch
    tensors (GPU-decoded frames) pass as they are. Anything else is one ``TypeError`` (not an
    array) or ``InputError`` (a ``ValueError``: an array that is no image) naming what was
    expected and what was got.
    """
    what = f"image {index}"
    if type(image).__module__.startswith("torch"):
        return image
    if is_path_or_pil(image):
        image = as_image(image)  # a file read as trtdet run reads it, a PIL image RGB -> BGR
    if not isinstance(image, np.ndarray):
        kind = "None" if image is None else f"{type(image).__module__}.{type(image).__qualname__}".removeprefix("builtins.")
        raise TypeError(f"{what}: expected an HxWx3 uint8 BGR numpy array, a file path or a PIL image, got {kind}")
    converted = to_bgr_uint8(image, what)  # InputError (a ValueError) naming the input
    check_image_size(what, converted.shape[1], converted.shape[0])
    return converted
