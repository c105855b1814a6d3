"""JPEG decoding that keeps libjpeg's warnings: corrupt data that still decodes is reported, not hidden.

``cv2.imdecode`` prints libjpeg's warnings ("Corrupt JPEG data: bad Huffman code", ...) to the
process's stderr and returns the damaged image (partly gray) as if it were clean. simplejpeg
runs the same libjpeg-turbo through TurboJPEG, which keeps the message per call instead: decoded
with ``strict=True`` a warning is an exception, nothing is printed, no file descriptor is touched
(so threads still decode in parallel). With OpenCV's settings (accurate integer IDCT, smooth
chroma upsampling, BGR out) the pixels equal ``cv2.imdecode``'s; tests/trtdet/io/test_jpeg.py
checks that on real photos, gray, progressive, restart-marker and EXIF-turned files.

Only JPEGs both decode alike go this way: 8-bit Huffman-coded baseline, extended or progressive
with one or three components, their own Huffman tables, and an EXIF orientation read without
doubt. CMYK, 12-bit, lossless, arithmetic-coded and MJPEG-style files, and files whose EXIF
OpenCV might read differently, are left to OpenCV (``decode_jpeg`` returns None).
"""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

from trtdet.errors import InputError
from trtdet.io.jpeg_header import jpeg_header, plain_orientation

#: How libjpeg's warnings (JWRN_* in jerror.h) begin; any other message is a fatal error.
_WARNING_STARTS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Inconsistent progression sequence",
    "Invalid SOS parameters for sequential JPEG",
    "Warning: unknown JFIF revision",
    "Unknown Adobe color transform code",
    "Application transferred too many scanlines",
)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned and flipped as EXIF ``orientation`` says, the way ``cv2.imread`` applies it."""
    if orientation >= 5:  # 5-8 swap rows and columns first
        image = cv2.transpose(image)
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation)
    return image if flip is None else cv2.flip(image, flip)


def is_libjpeg_warning(message: str) -> bool:
    """True for libjpeg's recoverable warnings, False for its fatal errors."""
    return message.startswith(_WARNING_STARTS)


#: libjpeg warnings about headers that change nothing in the pixels (an unknown JFIF version).
_HARMLESS_STARTS = ("Warning: unknown JFIF revision",)


def corrupt_data_warning(source: str, message: str) -> str | None:
    """The one line a record carries for a JPEG libjpeg complained about but decoded (None: harmless)."""
    if message.startswith(_HARMLESS_STARTS):
        return None
    if message.startswith("Unknown Adobe color transform code"):
        return f"{source}: JPEG warning ({message}); decoded anyway, the colours may be wrong"
    detail = message.removeprefix("Corrupt JPEG data: ")
    return f"{source}: corrupt JPEG data ({detail}); decoded anyway, parts of the image may be gray"


def _turbojpeg(data: bytes, strict: bool) -> np.ndarray:
    return simplejpeg.decode_jpeg(data, colorspace="BGR", fastdct=False, fastupsample=False, strict=strict)


def decode_jpeg(data: bytes, source: str) -> tuple[np.ndarray, str | None] | None:
    """Decode a JPEG as ``cv2.imdecode(data, IMREAD_COLOR)`` would: ``(image, warning or None)``.

    The warning is one line naming ``source`` and libjpeg's message. None when the file is not
    one TurboJPEG decodes as OpenCV does (the caller uses OpenCV). A clean file is decoded once.
    After a warning it is decoded again without stopping on it: libjpeg then goes on exactly as
    under OpenCV, quietly. After a fatal error OpenCV decides, as it always did: it keeps an
    image whose rows were all read (a broken marker after them), or gives none (``InputError``
    with libjpeg's message).
    """
    orientation = plain_orientation(jpeg_header(data))
    if orientation is None:
        return None
    try:
        return orient(_turbojpeg(data, strict=True), orientation), None
    except ValueError as exc:
        message = str(exc).strip() or "unknown libjpeg error"
    warning = corrupt_data_warning(source, message)
    try:
        image = _turbojpeg(data, strict=False)  # raises only for a fatal error with no warning before it
    except ValueError:  # the rows libjpeg read were clean (OpenCV prints nothing either)
        return _opencv(data, source, message), warning if is_libjpeg_warning(message) else None
    if is_libjpeg_warning(message) or _complete_before_fatal(data):
        return orient(image, orientation), warning  # every row libjpeg wrote, as OpenCV keeps them
    # A fatal error after a warning, in a file of several scans: TurboJPEG's rows may be unwritten,
    # OpenCV may keep the image or not. Rare; OpenCV decides (and prints libjpeg's warning itself).
    return _opencv(data, source, message), warning


def _opencv(data: bytes, source: str, message: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(source, f"not a readable image (corrupt JPEG data: {message.removeprefix('Corrupt JPEG data: ')})")
    return image


def _complete_before_fatal(data: bytes) -> bool:
    """True when a fatal error can only come after every row was decoded: a single-scan sequential JPEG.

    Its markers after the scan are read only once the rows are out (``jpeg_finish_decompress``),
    where OpenCV keeps the image too. Files with several scans read them all first.
    """
    header = jpeg_header(data)
    return header is not None and header.process in (0xC0, 0xC1) and data.count(b"\xff\xda") == 1
