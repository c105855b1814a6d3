"""CenterNet ``ctdet`` training targets, encoded exactly as upstream's ``CTDetDataset``.

Follows xingyizhou/CenterNet ``src/lib/utils/image.py`` (``gaussian_radius``,
``gaussian2D``, ``draw_umich_gaussian``) and ``src/lib/datasets/sample/ctdet.py``: per
object, a Gaussian peak of radius ``gaussian_radius((ceil(h), ceil(w)))`` at the integer
centre cell of its class's heatmap, the size ``(w, h)`` and the sub-cell offset
``centre - int(centre)`` stored at flat index ``y * W + x``.

Coordinates are box *edges* (pixel ``i`` spans ``[i, i + 1]``), divided by the stride, so
that decode's ``(cell + reg) * stride`` lands back on the box centre in network-input pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def gaussian_radius(det_size: tuple[float, float], min_overlap: float = 0.7) -> float:
    """Upstream's radius for a box of ``(height, width)`` (CornerNet's three cases, as upstream
    computes them, including its ``(b + sq) / 2`` root that every CenterNet model was trained with)."""
    height, width = det_size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian2d(shape: tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """Unnormalised Gaussian of ``shape`` centred in the middle, peak 1 (upstream ``gaussian2D``)."""
    m, n = ((s - 1.0) / 2.0 for s in shape)
    y, x = np.ogrid[-m : m + 1, -n : n + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h


def draw_umich_gaussian(
    heatmap: np.ndarray, center: tuple[int, int], radius: int, k: float = 1.0
) -> np.ndarray:
    """Max-splat a Gaussian of ``radius`` (sigma = diameter / 6) at integer ``center`` (x, y)."""
    diameter = 2 * radius + 1
    gaussian = gaussian2d((diameter, diameter), sigma=diameter / 6)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    masked_heatmap = heatmap[y - top : y + bottom, x - left : x + right]
    masked_gaussian = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    if min(masked_gaussian.shape) > 0 and min(masked_heatmap.shape) > 0:
        np.maximum(masked_heatmap, masked_gaussian * k, out=masked_heatmap)
    return heatmap


@dataclass
class Targets:
    """One image's targets: ``hm`` [C, H/s, W/s]; per object slot ``wh``/``reg`` [K, 2],
    ``ind`` [K] (flat cell index) and ``mask`` [K] (1 where a slot holds an object)."""

    hm: np.ndarray
    wh: np.ndarray
    reg: np.ndarray
    ind: np.ndarray
    mask: np.ndarray


def encode_targets(
    boxes: np.ndarray,
    class_ids: np.ndarray,
    num_classes: int,
    input_hw: tuple[int, int],
    stride: int = 4,
    max_objects: int = 64,
) -> Targets:
    """Targets for ``boxes`` (N, 4) xyxy in network-input pixels of classes ``class_ids``."""
    out_h, out_w = input_hw[0] // stride, input_hw[1] // stride
    hm = np.zeros((num_classes, out_h, out_w), np.float32)
    wh = np.zeros((max_objects, 2), np.float32)
    reg = np.zeros((max_objects, 2), np.float32)
    ind = np.zeros(max_objects, np.int64)
    mask = np.zeros(max_objects, np.float32)
    for k, (box, cls) in enumerate(
        zip(np.asarray(boxes, np.float32)[:max_objects], class_ids[:max_objects], strict=False)
    ):
        box = box / stride
        box[[0, 2]] = np.clip(box[[0, 2]], 0, out_w)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, out_h)
        h, w = float(box[3] - box[1]), float(box[2] - box[0])
        if h <= 0 or w <= 0:
            continue
        radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
        ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
        ct_int = np.minimum(ct.astype(np.int32), [out_w - 1, out_h - 1])
        draw_umich_gaussian(hm[int(cls)], (int(ct_int[0]), int(ct_int[1])), radius)
        wh[k] = w, h
        ind[k] = ct_int[1] * out_w + ct_int[0]
        reg[k] = ct - ct_int
        mask[k] = 1
    return Targets(hm, wh, reg, ind, mask)
