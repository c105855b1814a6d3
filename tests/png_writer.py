"""A minimal PNG writer for test files OpenCV cannot write (palette, gray + alpha, transparency).

Written from the PNG specification (chunks IHDR, PLTE, tRNS, IDAT, IEND; filter 0 on every row),
so the tests need neither Pillow nor a particular encoder.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

#: PNG colour types: gray, RGB, palette, gray + alpha, RGBA.
GRAY, RGB, PALETTE, GRAY_ALPHA, RGBA = 0, 2, 3, 4, 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(
    path: Path, pixels: np.ndarray, color_type: int, *, palette: np.ndarray | None = None, trns: bytes | None = None
) -> Path:
    """Write ``pixels`` (H x W or H x W x C, uint8 or big-endian-able uint16) in ``color_type``.

    ``palette``: (N, 3) uint8 RGB for ``PALETTE``; ``trns``: the raw tRNS chunk (alpha per palette entry).
    """
    pixels = np.asarray(pixels)
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.reshape(pixels.shape[0], -1).astype(">u2" if depth == 16 else np.uint8)
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if palette is not None:
        png += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    png += _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(png)
    return Path(path)
