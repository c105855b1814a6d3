"""The letterbox affine transform shared by preprocess (forward) and decode (inverse).

It lives below both stages, so each imports it from here: preprocess makes one per image,
decode maps boxes back through it. ``LETTERBOXES`` names the geometries a model may pick
(``trtdet.preprocess.letterbox`` implements them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The letterbox geometries (``ModelSpec.letterbox``): see ``trtdet.preprocess.letterbox``.
#: Every accepted name; ``ultralytics`` is the old name of ``square``.
LETTERBOXES: tuple[str, ...] = ("rect", "square", "warp", "stretch", "ultralytics")
LETTERBOX_ALIASES: dict[str, str] = {"ultralytics": "square"}


@dataclass(frozen=True)
class AffineTransform:
    """Maps an image of ``src_size`` (H, W) into a network input of ``dst_size`` (H, W).

    ``matrix`` (2x3, float64) takes source pixel *centres* to destination pixel centres
    (pixel i has its centre at i): the matrix for ``cv2.warpAffine`` and the GPU kernel.
    ``inverse`` (2x3, float64) takes network-input *box* coordinates (pixel i spans
    [i, i+1], as detector heads predict) back to the same convention in the original
    image. Preprocess creates one per image and decode receives it: it is the only state
    they share.

    ``resized`` (H, W) and ``pad`` (top, left) are set by the resize-and-pad letterbox
    (``trtdet.preprocess.letterbox.ultralytics_letterbox``): the image is resized to
    ``resized`` and placed at ``pad``; None and (0, 0) for a plain warp.
    """

    matrix: np.ndarray
    inverse: np.ndarray
    src_size: tuple[int, int]
    dst_size: tuple[int, int]
    resized: tuple[int, int] | None = None
    pad: tuple[int, int] = (0, 0)

    @property
    def scale(self) -> float:
        return float(self.matrix[0, 0])

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` x/y points from network-input to original-image pixels."""
        inv = self.inverse
        x = points[..., 0] * inv[0, 0] + points[..., 1] * inv[0, 1] + inv[0, 2]
        y = points[..., 0] * inv[1, 0] + points[..., 1] * inv[1, 1] + inv[1, 2]
        return np.stack([x, y], axis=-1)

    def boxes_to_source(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map ``(N, 4)`` network-input boxes to the original image, clipped to its bounds."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0:2] = self.to_source(xyxy[:, 0:2])
        out[:, 2:4] = self.to_source(xyxy[:, 2:4])
        if clip:
            h, w = self.src_size
            np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out


def letterbox_transform(src_size: tuple[int, int], dst_size: tuple[int, int]) -> AffineTransform:
    """Scale-to-fit and centre ``src_size`` (H, W) in ``dst_size`` (H, W), half-pixel aligned.

    ``scale = min(dst/src)``; with pixel centres at integer coordinates the source centre
    ``(src - 1) / 2`` lands on the destination centre ``(dst - 1) / 2``, which is what
    resizing with pixel-area semantics does (cv2.resize, Ultralytics' letterbox).
    """
    src_h, src_w = src_size
    dst_h, dst_w = dst_size
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"image size must be positive, got {src_w}x{src_h}")
    s = min(dst_w / src_w, dst_h / src_h)
    matrix = np.array(
        [
            [s, 0.0, -s * src_w * 0.5 + dst_w * 0.5 + s * 0.5 - 0.5],
            [0.0, s, -s * src_h * 0.5 + dst_h * 0.5 + s * 0.5 - 0.5],
        ],
        dtype=np.float64,
    )
    # In edge coordinates the forward map is x_dst = s * x_src + (dst - s * src) / 2.
    pad_x = (dst_w - s * src_w) * 0.5
    pad_y = (dst_h - s * src_h) * 0.5
    inverse = np.array([[1.0 / s, 0.0, -pad_x / s], [0.0, 1.0 / s, -pad_y / s]], dtype=np.float64)
    return AffineTransform(matrix, inverse, (int(src_h), int(src_w)), (int(dst_h), int(dst_w)))
