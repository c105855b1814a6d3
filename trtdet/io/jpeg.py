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

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from trtdet.errors import InputError

#: Start-of-frame markers (Huffman-coded, 8-bit capable) that TurboJPEG and OpenCV decode alike.
_PLAIN_SOF = (0xC0, 0xC1, 0xC2)
#: Every start-of-frame marker (the other 0xC* codes are DHT, JPG and DAC).
_ANY_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers that stand alone, without a length field.
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})
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


@dataclass(frozen=True)
class _Layout:
    """What the markers before the first scan say."""

    process: int
    precision: int
    components: int
    has_huffman_tables: bool
    exif: tuple[bytes, ...]


def _layout(data: bytes) -> _Layout | None:
    """The frame header, Huffman tables and EXIF segments up to the first scan (None: not a readable JPEG header)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, frame, tables, exif = 2, None, False, []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        body = data[pos + 4 : pos + 2 + length]
        if marker in _ANY_SOF:
            if frame is not None or len(body) < 6:
                return None
            frame = (marker, body[0], body[5])
        elif marker == 0xC4:
            tables = True
        elif marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            exif.append(body)
        elif marker == 0xDA:
            return None if frame is None else _Layout(frame[0], frame[1], frame[2], tables, tuple(exif))
        pos += 2 + length
    return None


def exif_orientation(segment: bytes) -> int | None:
    """The orientation (1-8) an APP1 ``Exif`` segment states; 1 when it states none; None when in doubt.

    In doubt: a malformed TIFF header or IFD0, or an orientation entry that is not one SHORT
    of 1-8 (OpenCV reads such entries its own way, so those files are left to it).
    """
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    magic, ifd = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    if ifd + 2 + 12 * count > len(tiff):
        return None
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == 0x0112:
            if kind != 3 or number != 1:
                return None
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return int(value) if 1 <= value <= 8 else None
    return 1


def _plain_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG that TurboJPEG decodes as OpenCV does, or None for any other file."""
    layout = _layout(data)
    if (
        layout is None
        or layout.process not in _PLAIN_SOF
        or layout.precision != 8
        or layout.components not in (1, 3)
        or not layout.has_huffman_tables  # MJPEG frames: OpenCV supplies its own default tables
        or len(layout.exif) > 1
    ):
        return None
    return exif_orientation(layout.exif[0]) if layout.exif else 1


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
    orientation = _plain_orientation(data)
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
    layout = _layout(data)
    return layout is not None and layout.process in (0xC0, 0xC1) and data.count(b"\xff\xda") == 1
