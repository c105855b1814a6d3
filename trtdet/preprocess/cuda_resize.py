"""The resize-and-pad letterbox kernel: ``cv2.resize(INTER_LINEAR)`` + ``copyMakeBorder``, normalised.

The Ultralytics letterbox on the GPU (geometry from ``trtdet.preprocess.letterbox``). Pixels
inside the resized rectangle follow OpenCV's fixed-point ``INTER_LINEAR`` resize of uint8
images (``resizeGeneric_`` with ``HResizeLinear`` and ``VResizeLinearVec_32s8u``):

* per destination index ``d`` (after removing the pad): ``f = float32((d + 0.5) * scale - 0.5)``
  in double, ``scale = 1 / (new / src)``; ``s = floor(f)``, ``f -= s``; weights
  ``round_half_even((1 - f) * 2048)`` and ``round_half_even(f * 2048)``;
* columns: ``s < 0`` or ``s >= src_w - 1`` is clamped to the edge with weight 2048 on it
  alone; rows keep their weights and clamp both row indices into the image;
* ``h = p0 * a0 + p1 * a1`` per row (exact integers), then
  ``v = (((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16) + 2) >> 2``, saturated to uint8.

Checked bit for bit against ``cv2.resize`` (OpenCV 5.0) in the tests; everything outside
the rectangle is ``border``. Then ``out = fl(fl(v * scale) + shift)`` like the warp kernel.
"""

from __future__ import annotations

import functools
import math

from numba import cuda, float32, int64

from trtdet.cuda.device_functions import store_normalized
from trtdet.cuda.runtime import dadd_rn, dmul_rn, fadd_rn, fmul_rn, rint_f32

#: cv2's INTER_RESIZE_COEF_SCALE: bilinear weights in units of 1/2048.
COEF_SCALE = 2048


@cuda.jit(device=True)
def clamp_index(i, size):
    """``i`` clipped into ``[0, size - 1]`` (written out: the CUDA target has no min/max of ints here)."""
    if i < 0:
        return int64(0)
    if i >= size:
        return size - 1
    return i


@cuda.jit(device=True)
def resize_taps(d, scale, size, clamp_weight):
    """cv2.resize's two source indices and fixed-point weights for destination index ``d``.

    ``clamp_weight``: columns move an out-of-range tap's whole weight onto the edge pixel;
    rows (False) only clamp the indices.
    """
    f = float32(dadd_rn(dmul_rn(float(d) + 0.5, scale), -0.5))
    s = int64(math.floor(f))
    f = f - float32(s)
    if clamp_weight:
        if s < 0:
            s = int64(0)
            f = float32(0.0)
        if s >= size - 1:
            s = size - 1
            f = float32(0.0)
    w0 = int64(rint_f32(fmul_rn(fadd_rn(float32(1.0), -f), float32(COEF_SCALE))))
    w1 = int64(rint_f32(fmul_rn(f, float32(COEF_SCALE))))
    return clamp_index(s, size), clamp_index(s + 1, size), w0, w1


def _letterbox_resize_normalize(pixels, meta, out, border, s0, s1, s2, t0, t1, t2, swap_rb, unused):
    """One thread per destination pixel: resized pixel or border, normalised into 3 planes.

    ``meta[b]``: byte offset, source height, width, row stride, scale_x, scale_y (double),
    resized width, height, left pad, top pad. ``unused`` keeps the warp kernel's signature.
    """
    x, y, b = cuda.grid(3)
    height = out.shape[2]
    width = out.shape[3]
    if x >= width or y >= height or b >= out.shape[0]:
        return
    base = int64(meta[b, 0])
    src_h = int64(meta[b, 1])
    src_w = int64(meta[b, 2])
    step = int64(meta[b, 3])
    dx = int64(x) - int64(meta[b, 8])
    dy = int64(y) - int64(meta[b, 9])
    inside = dx >= 0 and dx < int64(meta[b, 6]) and dy >= 0 and dy < int64(meta[b, 7])
    x0 = x1 = y0 = y1 = a0 = a1 = b0 = b1 = int64(0)
    if inside:
        x0, x1, a0, a1 = resize_taps(dx, meta[b, 4], src_w, True)
        y0, y1, b0, b1 = resize_taps(dy, meta[b, 5], src_h, False)
    row0 = base + y0 * step
    row1 = base + y1 * step
    for c in range(3):
        v = border
        if inside:
            h0 = int64(pixels[row0 + x0 * 3 + c]) * a0 + int64(pixels[row0 + x1 * 3 + c]) * a1
            h1 = int64(pixels[row1 + x0 * 3 + c]) * a0 + int64(pixels[row1 + x1 * 3 + c]) * a1
            level = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2
            if level > 255:  # saturate_cast<uchar>; the level is never negative
                level = int64(255)
            v = float32(level)
        store_normalized(out, b, y, x, c, v, swap_rb, s0, s1, s2, t0, t1, t2)


#: The kernel's Python source, for ``cuda.compile_ptx`` checks.
KERNEL_PY = _letterbox_resize_normalize
letterbox_resize_normalize_kernel = cuda.jit(_letterbox_resize_normalize)


def resize_meta(src_w: int, src_h: int, resized: tuple[int, int], pad: tuple[int, int]) -> list[float]:
    """Metadata columns 4..9 of one image for the kernel: cv2's double scales, sizes, pads."""
    new_h, new_w = resized
    top, left = pad
    return [1.0 / (new_w / src_w), 1.0 / (new_h / src_h), new_w, new_h, left, top]


#: Below this fraction of a pixel a bilinear weight rounds to 0 of 2048 with room to spare (the
#: kernel's weight is 0 from 1/4096 down): rows read only with such weights need no copying.
_ZERO_WEIGHT_FRACTION = 1.0 / 8192


@functools.lru_cache(maxsize=256)
def resize_row_band(src_h: int, new_h: int, longest_period: int = 8) -> tuple[int, int, int] | None:
    """Source rows the resize kernel reads with a nonzero weight, as a repeating band, or None.

    ``(period, lo, hi)``: every row ``r`` with ``lo <= r % period < hi`` -- a superset of the rows
    whose pixels reach the output; the others are multiplied by a zero weight, so staging needs
    not hold them (a 1080-row frame resized to 360 reads only rows 1, 4, 7, ...: a third of the
    copy). None when the band would not skip a quarter of the rows. Same double and float32
    steps as ``resize_taps`` for the rows.
    """
    import numpy as np

    scale = 1.0 / (new_h / src_h)
    f = ((np.arange(new_h, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f)
    fraction = (f - s).astype(np.float32)
    s = s.astype(np.int64)
    needed = np.concatenate([np.clip(s[fraction < 1 - _ZERO_WEIGHT_FRACTION], 0, src_h - 1),
                             np.clip(s[fraction > _ZERO_WEIGHT_FRACTION] + 1, 0, src_h - 1)])
    best: tuple[int, int, int] | None = None
    best_share = 0.75
    for period in range(2, longest_period + 1):
        offsets = np.unique(needed % period)
        lo, hi = int(offsets[0]), int(offsets[-1]) + 1
        if (hi - lo) / period < best_share:
            best, best_share = (period, lo, hi), (hi - lo) / period
    return best
