"""CPU letterbox preprocessing with OpenCV (the reference the CUDA kernel matches).

``letterbox="warp"``: one ``cv2.warpAffine``; ``rect``, ``square`` (alias ``ultralytics``) and
``stretch``: ``cv2.resize`` (INTER_LINEAR) then ``cv2.copyMakeBorder``, exactly Ultralytics'
``LetterBox``. The geometry of all comes from ``trtdet.preprocess.letterbox``; with ``rect`` a
batch's input size is the stride-padded size of its images when they share a shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from trtdet.geometry import AffineTransform
from trtdet.preprocess.base import LetterboxSettings, PreprocessedBatch
from trtdet.preprocess.letterbox import Letterbox, batch_input_size, batch_transforms, make_transform


class WarpAffinePreprocessor:
    """Letterbox each image (one affine warp, or resize and pad), then normalise into ``[B, 3, H, W]`` float32.

    Pixels become ``(x / 255 - mean) / std`` per channel, in ``channel_order`` (images come
    in as BGR). ``border_value`` fills the padding before normalisation. ``letterbox`` picks
    the geometry (``trtdet.preprocess.letterbox``): ``"warp"`` (sub-pixel warp, the default),
    ``"square"``/``"ultralytics"``, ``"rect"`` or ``"stretch"`` (resize-and-pad, the same
    pixels as Ultralytics' predictor). ``input_size`` is the largest input; ``rect`` batches of
    one shape are smaller (padded to a multiple of ``stride`` only).
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        *,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: Literal["BGR", "RGB"] = "RGB",
        border_value: int = 114,
        letterbox: Letterbox = "warp",
        stride: int = 32,
    ) -> None:
        self.settings = LetterboxSettings(
            input_size, tuple(mean), tuple(std), channel_order, border_value, letterbox, stride
        )
        self.letterbox = self.settings.letterbox
        self.stride = self.settings.stride
        self.input_size = self.settings.input_size
        self.channel_order = self.settings.channel_order
        self.border_value = self.settings.border_value
        self._scale = self.settings.scale.reshape(3, 1, 1)
        self._shift = self.settings.shift.reshape(3, 1, 1)

    @classmethod
    def from_settings(cls, settings: LetterboxSettings) -> WarpAffinePreprocessor:
        """The preprocessor ``settings`` describe (``LetterboxSettings.of_spec(spec)`` for a model)."""
        return cls(settings.input_size, mean=settings.mean, std=settings.std, channel_order=settings.channel_order,
                   border_value=settings.border_value, letterbox=settings.letterbox,  # type: ignore[arg-type]
                   stride=settings.stride)

    def warp(self, image: np.ndarray, transform: AffineTransform | None = None) -> tuple[np.ndarray, AffineTransform]:
        """Letterbox one HWC uint8 BGR image (as a batch of one, unless ``transform`` is given);
        returns the warped uint8 image and its transform."""
        if transform is None:
            transform = make_transform(self.letterbox, image.shape[:2], self.input_size, stride=self.stride)
        h, w = transform.dst_size
        if transform.resized is not None:
            return self._resize_and_pad(image, transform), transform
        warped = cv2.warpAffine(
            image,
            transform.matrix,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(self.border_value,) * 3,
        )
        return warped, transform

    def _resize_and_pad(self, image: np.ndarray, transform: AffineTransform) -> np.ndarray:
        """Ultralytics' ``LetterBox.apply_image``: resize (when the size changes), then pad."""
        assert transform.resized is not None
        new_h, new_w = transform.resized
        if (new_h, new_w) != image.shape[:2]:
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        top, left = transform.pad
        bottom = transform.dst_size[0] - new_h - top
        right = transform.dst_size[1] - new_w - left
        return cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(self.border_value,) * 3
        )

    def __call__(self, images: Sequence[np.ndarray]) -> PreprocessedBatch:
        transforms = batch_transforms(self.letterbox, [image.shape for image in images], self.input_size, stride=self.stride)
        h, w = batch_input_size(transforms, self.input_size)
        batch = np.empty((len(images), 3, h, w), dtype=np.float32)
        for i, (image, transform) in enumerate(zip(images, transforms, strict=True)):
            warped, transform = self.warp(image, transform)
            if self.channel_order == "RGB":
                warped = warped[..., ::-1]
            chw = warped.transpose(2, 0, 1)
            np.multiply(chw, self._scale, out=batch[i], casting="unsafe")
            batch[i] += self._shift
        return PreprocessedBatch(batch, transforms)
