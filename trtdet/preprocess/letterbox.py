"""The two letterbox geometries a model can pick: the sub-pixel warp and Ultralytics' resize-and-pad.

* ``"warp"`` (tensorRT_Pro / CenterNet style, ``letterbox_transform``): one affine warp,
  scale ``min(dst/src)``, centred with half-pixel alignment, the border value read wherever a
  bilinear tap falls outside the image (so edge pixels blend with the border).
* ``"ultralytics"`` (``ultralytics_letterbox``): Ultralytics'
  ``LetterBox(auto=False, scaleup=True, center=True)``: the image is resized to
  ``max(round(side * r), 1)`` pixels per side with ``cv2.resize(INTER_LINEAR)`` (source
  coordinates clamped inside the image, never blended with the border), then padded by whole
  pixels, ``top = round(dh - 0.1)``, ``left = round(dw - 0.1)``, with the border value. Boxes
  map back as Ultralytics' ``scale_boxes`` does: ``(x - left) / (new_w / w)`` per axis.

This module is the one definition of both: the CPU preprocessor and the CUDA kernel read the
sizes, pads and matrices from the ``AffineTransform`` made here.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from trtdet.geometry import LETTERBOXES, AffineTransform, letterbox_transform

Letterbox = Literal["warp", "ultralytics"]


def check_letterbox(letterbox: str) -> str:
    """``letterbox`` if it names a geometry; otherwise ``ValueError`` listing the choices."""
    if letterbox not in LETTERBOXES:
        raise ValueError(f"letterbox: expected one of {', '.join(LETTERBOXES)}, got {letterbox!r}")
    return letterbox


def ultralytics_letterbox(src_size: tuple[int, int], dst_size: tuple[int, int]) -> AffineTransform:
    """Ultralytics' centred letterbox of ``src_size`` (H, W) into ``dst_size`` (H, W).

    Same numbers as ``LetterBox.get_params`` (Python ``round``: half to even) and
    ``scale_boxes``. ``matrix`` takes source pixel centres to destination pixel centres as
    ``cv2.resize`` samples them (per-axis scale ``new/src``, offset by the pad); ``inverse``
    takes box coordinates back: ``x_src = (x - left) * w / new_w``.
    """
    src_h, src_w = int(src_size[0]), int(src_size[1])
    dst_h, dst_w = int(dst_size[0]), int(dst_size[1])
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"image size must be positive, got {src_w}x{src_h}")
    r = min(dst_h / src_h, dst_w / src_w)
    new_w, new_h = max(round(src_w * r), 1), max(round(src_h * r), 1)
    top = round((dst_h - new_h) / 2 - 0.1)
    left = round((dst_w - new_w) / 2 - 0.1)
    gx, gy = new_w / src_w, new_h / src_h
    matrix = np.array(
        [[gx, 0.0, left + 0.5 * gx - 0.5], [0.0, gy, top + 0.5 * gy - 0.5]],
        dtype=np.float64,
    )
    inverse = np.array([[1.0 / gx, 0.0, -left / gx], [0.0, 1.0 / gy, -top / gy]], dtype=np.float64)
    return AffineTransform(
        matrix, inverse, (src_h, src_w), (dst_h, dst_w), resized=(new_h, new_w), pad=(top, left)
    )


def make_transform(letterbox: str, src_size: tuple[int, int], dst_size: tuple[int, int]) -> AffineTransform:
    """The transform of geometry ``letterbox`` (``"warp"`` or ``"ultralytics"``)."""
    if letterbox == "ultralytics":
        return ultralytics_letterbox(src_size, dst_size)
    return letterbox_transform(src_size, dst_size)
