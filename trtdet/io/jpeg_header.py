"""What a JPEG's markers before its first scan say, read once for everyone who needs it.

The size limit (``trtdet.io.image_header``), the CPU decoder's choice between TurboJPEG and
OpenCV (``trtdet.io.jpeg``) and the GPU reader's choice of nvJPEG (``trtdet.io.gpu_jpeg``) all
read the same segments: the frame header (process, precision, size, components), whether the
file has its own Huffman tables, and its EXIF segments.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: Start-of-frame markers (Huffman-coded, 8-bit capable) that TurboJPEG, nvJPEG and OpenCV decode alike.
PLAIN_SOF = (0xC0, 0xC1, 0xC2)
#: Every start-of-frame marker (the other 0xC* codes are DHT, JPG and DAC).
ANY_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers that stand alone, without a length field.
NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class JpegHeader:
    """The frame header and what precedes the first scan."""

    process: int
    precision: int
    height: int
    width: int
    components: int
    has_huffman_tables: bool = False
    #: Bodies of the APP1 ``Exif`` segments, in file order.
    exif: tuple[bytes, ...] = ()
    #: Whether a start-of-scan follows (False: the file ends, or is cut, before any scan).
    reaches_scan: bool = False


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The markers of JPEG ``data`` up to its first scan (None: not a JPEG, no frame header, or a malformed one)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, frame, tables, exif = 2, None, False, []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break
        body = data[pos + 4 : pos + 2 + length]
        if marker in ANY_SOF:
            if frame is not None:  # a second frame header before any scan
                return None
            if len(body) < 6:
                break
            frame = (marker, body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5])
        elif marker == 0xC4:
            tables = True
        elif marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            exif.append(body)
        elif marker == 0xDA:
            return None if frame is None else JpegHeader(*frame, tables, tuple(exif), reaches_scan=True)
        pos += 2 + length
    return None if frame is None else JpegHeader(*frame, tables, tuple(exif))


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


def plain_orientation(header: JpegHeader | None) -> int | None:
    """The EXIF orientation of a plain JPEG (one TurboJPEG and nvJPEG decode as OpenCV does), or
    None for any other file: not 8-bit Huffman baseline/extended/progressive with 1 or 3
    components and its own tables (MJPEG frames rely on OpenCV's default tables), no scan,
    more than one Exif segment, or an orientation in doubt."""
    if (
        header is None
        or not header.reaches_scan
        or header.process not in PLAIN_SOF
        or header.precision != 8
        or header.components not in (1, 3)
        or not header.has_huffman_tables
        or len(header.exif) > 1
    ):
        return None
    return exif_orientation(header.exif[0]) if header.exif else 1
