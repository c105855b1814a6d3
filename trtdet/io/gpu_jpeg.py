"""JPEG decoding on the GPU (nvJPEG through torchvision) for ``--device cuda`` runs.

Only files the GPU decodes the way OpenCV would are sent there: the plain JPEGs the CPU reader
also decodes itself (8-bit Huffman baseline, extended or progressive, one or three components,
their own tables, see ``trtdet.io.jpeg_header``) with no EXIF turn. Everything else (PNG, CMYK
JPEGs, lossless, 12-bit, MJPEG frames, turned or doubtful EXIF, files nvJPEG rejects)
goes to the CPU reader, which gives ``cv2.imread``'s pixels (orientation applied) and the
one-line errors.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from trtdet.io.jpeg_header import jpeg_header, plain_orientation
from trtdet.io.limits import max_image_pixels
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import cv2
    import torch
    import torchvision.io as torchvision_io
else:
    cv2 = lazy_import("cv2")
    torch = lazy_import("torch")
    torchvision_io = lazy_import("torchvision.io")


def gpu_decodable(data: bytes) -> bool:
    """True for the plain JPEGs (``trtdet.io.jpeg_header.plain_orientation``) without an EXIF turn:
    nvJPEG decodes those to the image ``cv2.imread`` gives."""
    header = jpeg_header(data)
    return (
        plain_orientation(header) == 1
        and header is not None
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
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot decode JPEG on the GPU: {reason}")
        self.torch = torch
        self._decode = torchvision_io.decode_jpeg
        self._mode = torchvision_io.ImageReadMode.RGB
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

