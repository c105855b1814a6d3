"""An image file's declared width and height, read from its header without decoding it.

Covers the formats OpenCV reads that photos and scans come in: JPEG, PNG, BMP, GIF, WebP,
TIFF and the Netpbm family. Anything else returns None and is size-checked after decoding.
"""

from __future__ import annotations

import re

from trtdet.io.jpeg_header import jpeg_header

_PNG = b"\x89PNG\r\n\x1a\n"
_PNM = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)*(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the file's header states them, or None for an unknown or cut header."""
    for reader in (_jpeg, _png, _bmp, _gif, _webp, _tiff, _pnm):
        size = reader(data)
        if size is not None:
            return size if size[0] > 0 and size[1] > 0 else None
    return None


def _u16(data: bytes, at: int, order: str = "little") -> int:
    return int.from_bytes(data[at : at + 2], order)  # type: ignore[arg-type]


def _u32(data: bytes, at: int, order: str = "little") -> int:
    return int.from_bytes(data[at : at + 4], order)  # type: ignore[arg-type]


def _jpeg(data: bytes) -> tuple[int, int] | None:
    header = jpeg_header(data)
    return None if header is None else (header.width, header.height)


def _png(data: bytes) -> tuple[int, int] | None:
    if data[:8] != _PNG or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return _u32(data, 16, "big"), _u32(data, 20, "big")


def _bmp(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"BM" or len(data) < 26:
        return None
    if _u32(data, 14) == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _u16(data, 18), _u16(data, 20)
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    return _u16(data, 6), _u16(data, 8)


def _webp(data: bytes) -> tuple[int, int] | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return _u16(data, 26) & 0x3FFF, _u16(data, 28) & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = _u32(data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = {b"II*\x00": "little", b"MM\x00*": "big"}.get(data[:4])
    if order is None:
        return None
    ifd = _u32(data, 4, order)
    if ifd + 2 > len(data):
        return None
    found: dict[int, int] = {}
    for k in range(_u16(data, ifd, order)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            return None
        tag, kind = _u16(data, entry, order), _u16(data, entry + 2, order)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = _u16(data, entry + 8, order) if kind == 3 else _u32(data, entry + 8, order)
        if len(found) == 2:
            return found[256], found[257]
    return None


def _pnm(data: bytes) -> tuple[int, int] | None:
    match = _PNM.match(data[:1024])
    return None if match is None else (int(match.group(1)), int(match.group(2)))
