"""CPU letterbox preprocessing with cv2.warpAffine (the reference the CUDA kernel matches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from trtdet.preprocess.affine import letterbox_transform
from trtdet.preprocess.base import PreprocessedBatch


class WarpAffinePreprocessor:
    """Letterbox each image with one affine warp, then normalise into ``[B, 3, H, W]`` float32.

    Pixels become ``(x / 255 - mean) / std`` per channel, in ``channel_order`` (images come
    in as BGR). ``border_value`` fills the padding before normalisation.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        *,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: Literal["BGR", "RGB"] = "RGB",
        border_value: int = 114,
    ) -> None:
        if channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order: expected 'BGR' or 'RGB', got {channel_order!r}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.channel_order = channel_order
        self.border_value = int(border_value)
        mean_arr = np.asarray(mean, dtype=np.float32)
        std_arr = np.asarray(std, dtype=np.float32)
        # (x / 255 - mean) / std == x * scale + shift, per channel.
        self._scale = (1.0 / (255.0 * std_arr)).reshape(3, 1, 1).astype(np.float32)
        self._shift = (-mean_arr / std_arr).reshape(3, 1, 1).astype(np.float32)

    def warp(self, image: np.ndarray) -> tuple[np.ndarray, object]:
        """Letterbox one HWC uint8 BGR image; returns the warped uint8 image and its transform."""
        h, w = self.input_size
        transform = letterbox_transform(image.shape[:2], self.input_size)
        warped = cv2.warpAffine(
            image,
            transform.matrix,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(self.border_value,) * 3,
        )
        return warped, transform

    def __call__(self, images: Sequence[np.ndarray]) -> PreprocessedBatch:
        h, w = self.input_size
        batch = np.empty((len(images), 3, h, w), dtype=np.float32)
        transforms = []
        for i, image in enumerate(images):
            warped, transform = self.warp(image)
            if self.channel_order == "RGB":
                warped = warped[..., ::-1]
            chw = warped.transpose(2, 0, 1)
            np.multiply(chw, self._scale, out=batch[i], casting="unsafe")
            batch[i] += self._shift
            transforms.append(transform)
        return PreprocessedBatch(batch, transforms)
