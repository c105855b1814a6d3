"""How large an image trtdet accepts, checked from the file's header before anything is decoded.

OpenCV's geometric functions (``warpAffine`` among them) index pixels with 32-bit integers and
crash the process on images of 2**31 bytes or more; decoding such a file also takes gigabytes.
So images are refused above ``max_image_pixels()`` (``TRTDET_MAX_IMAGE_PIXELS``, default
2**28 = 16384x16384), which can be raised up to ``CEILING_PIXELS``: the most pixels whose
decoded 4-channel 8-bit image stays below 2**31 bytes.
"""

from __future__ import annotations

import os

from trtdet.errors import InputError, UsageError

#: The environment variable that raises (or lowers) the largest accepted image, in pixels.
ENV_MAX_PIXELS = "TRTDET_MAX_IMAGE_PIXELS"
#: Default limit: 2**28 pixels (16384 x 16384; 805 MB decoded as BGR).
DEFAULT_MAX_PIXELS = 2**28
#: The most pixels trtdet can hold at all: a 4-channel 8-bit image under 2**31 bytes.
CEILING_PIXELS = (2**31 - 1) // 4


def positive_int_setting(name: str, default: int, unit: str) -> int:
    """The whole number ``>= 1`` environment variable ``name`` holds (``_`` separators allowed),
    or ``default`` when unset; ``UsageError`` naming the variable otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name}={raw!r}: expected a whole number of {unit}, at least 1")
    return value


def max_image_pixels() -> int:
    """The largest image accepted, in pixels (``TRTDET_MAX_IMAGE_PIXELS``, read on every call)."""
    return min(positive_int_setting(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS, "pixels"), CEILING_PIXELS)


def check_image_size(source: str, width: int, height: int) -> None:
    """Raise ``InputError`` when a ``width`` x ``height`` image is over the limit (or has no pixels)."""
    if width <= 0 or height <= 0:
        raise InputError(source, f"image declares no pixels ({width}x{height})")
    pixels = width * height
    limit = max_image_pixels()
    if pixels <= limit:
        return
    if pixels > CEILING_PIXELS:
        raise InputError(
            source,
            f"image too large: {width}x{height} = {pixels:,} pixels, over {CEILING_PIXELS:,}, "
            "the most trtdet can process (OpenCV's 32-bit pixel indexing); downscale it first",
        )
    raise InputError(
        source,
        f"image too large: {width}x{height} = {pixels:,} pixels, over the limit of {limit:,} "
        f"(raise it with {ENV_MAX_PIXELS}=N, up to {CEILING_PIXELS:,})",
    )
