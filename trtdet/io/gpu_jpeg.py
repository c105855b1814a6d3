"""JPEG decoding on the GPU (nvJPEG through torchvision) for ``--device cuda`` runs.

Only files the GPU decodes the way OpenCV would are sent there: 8-bit baseline, extended or
progressive JPEGs with one or three components and no EXIF rotation. Everything else (PNG,
CMYK JPEGs, lossless, 12-bit, files whose EXIF orientation turns them, files nvJPEG rejects)
goes to the CPU reader, which gives ``cv2.imread``'s pixels (orientation applied) and the
one-line errors.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

from trtdet.io.limits import max_image_pixels

#: Start-of-frame markers nvJPEG and OpenCV both decode to the same image.
_GPU_SOF = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
#: Markers that stand alone, without a length field.
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class JpegHeader:
    """What the start-of-frame segment says: process, bit depth, size and component count."""

    process: int
    precision: int
    height: int
    width: int
    components: int
    #: EXIF orientation (1 = as stored) from an APP1 segment before the frame header.
    orientation: int = 1


def exif_orientation(segment: bytes) -> int:
    """The orientation tag (0x0112) of an APP1 ``Exif`` segment body; 1 when absent or unreadable."""
    if segment[:6] != b"Exif\x00\x00" or len(segment) < 14:
        return 1
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == 0x0112 and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return int(value)
    return 1


def jpeg_header(data: bytes) -> JpegHeader | None:
    """Parse the first start-of-frame segment of JPEG ``data`` (None if it is not a JPEG or is cut)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    orientation = 1
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
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > len(data):
                return None
            body = data[pos + 4 : pos + 10]
            return JpegHeader(
                marker, body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5],
                orientation,
            )
        if marker == 0xE1 and orientation == 1:
            orientation = exif_orientation(data[pos + 4 : pos + 2 + length])
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def gpu_decodable(data: bytes) -> bool:
    """True for JPEGs that nvJPEG decodes to the same image ``cv2.imread`` would (no EXIF turn)."""
    header = jpeg_header(data)
    return (
        header is not None
        and header.process in _GPU_SOF
        and header.precision == 8
        and header.components in (1, 3)
        and not 2 <= header.orientation <= 8  # 2..8 flip or turn the image
        and 0 < header.height * header.width <= max_image_pixels()
    )


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why JPEGs cannot be decoded on the GPU here, or None when they can (probed once)."""
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return "torchvision is not installed"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA GPU"
    import cv2
    import numpy as np

    _, encoded = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    try:
        decode_jpeg(torch.from_numpy(encoded.reshape(-1)), mode=ImageReadMode.RGB, device="cuda")
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"torchvision cannot decode JPEG on CUDA ({str(exc).strip().splitlines()[0]})"
    return None


class CudaJpegDecoder:
    """Decodes batches of JPEG files into HWC uint8 BGR torch CUDA tensors on ``device`` (``cuda``, ``cuda:N``)."""

    def __init__(self, device: str = "cuda") -> None:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot decode JPEG on the GPU: {reason}")
        self.torch = torch
        self._decode = decode_jpeg
        self._mode = ImageReadMode.RGB
        self.device = device

    def decode(self, files: list[tuple[str, bytes]]) -> list[Any]:
        """One tensor per ``(source, data)``, or None where the GPU could not decode it.

        The batch goes to nvJPEG in one call; if that fails, files are tried one by one.
        Returns only after the GPU work is done, so the tensors are ready on any stream.
        """
        torch = self.torch
        if not files:
            return []
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for _, data in files]
        try:
            decoded: list[Any] = list(self._decode(encoded, mode=self._mode, device=self.device))
        except RuntimeError:
            decoded = []
            for tensor in encoded:
                try:
                    decoded.append(self._decode(tensor, mode=self._mode, device=self.device))
                except RuntimeError:
                    decoded.append(None)
        # nvJPEG gives CHW RGB; the pipeline takes HWC BGR.
        images = [None if image is None else image.flip(0).permute(1, 2, 0).contiguous() for image in decoded]
        torch.cuda.current_stream(torch.device(self.device)).synchronize()  # the decoder's GPU, whichever is current
        return images

