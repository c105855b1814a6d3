"""The letterbox geometries a model can pick: the sub-pixel warp and Ultralytics' resize-and-pad family.

* ``"warp"`` (tensorRT_Pro / CenterNet style, ``letterbox_transform``): one affine warp,
  scale ``min(dst/src)``, centred with half-pixel alignment, the border value read wherever a
  bilinear tap falls outside the image (so edge pixels blend with the border).
* ``"square"`` (alias ``"ultralytics"``, its old name): Ultralytics'
  ``LetterBox(auto=False, scaleup=True, center=True)``: the image is resized to
  ``max(round(side * r), 1)`` pixels per side with ``cv2.resize(INTER_LINEAR)`` (source
  coordinates clamped inside the image, never blended with the border), then padded by whole
  pixels, ``top = round(dh - 0.1)``, ``left = round(dw - 0.1)``, with the border value, to the
  full input size. Boxes map back as Ultralytics' ``scale_boxes`` does.
* ``"rect"``: Ultralytics' ``LetterBox(auto=True, stride=32)``, what ``yolo predict`` does by
  default: the same resize, but padded only up to a multiple of the stride (384x640 for a
  16:9 frame into 640). Ultralytics uses it only when all images of a call share one shape
  (``same_shapes`` in ``engine/predictor.py``) and the model accepts any height and width
  (a ``.pt`` or a dynamic export); otherwise it is ``"square"`` (``rect_applies``).
* ``"stretch"``: ``LetterBox(auto=False, scale_fill=True)``, RT-DETR's predictor: a plain
  resize to the input size, aspect not kept, no padding.

This module is the one definition of all of them: the CPU preprocessor and the CUDA kernel
read the sizes, pads and matrices from the ``AffineTransform`` made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from trtdet.geometry import LETTERBOX_ALIASES, LETTERBOXES, AffineTransform, letterbox_transform

Letterbox = Literal["rect", "square", "warp", "stretch", "ultralytics"]
#: The geometries done by resize-and-pad (the resize kernel), as opposed to the affine warp.
RESIZE_GEOMETRIES = ("rect", "square", "stretch")


def check_letterbox(letterbox: str) -> str:
    """The canonical name of ``letterbox`` (``ultralytics`` -> ``square``); ``ValueError`` listing the choices."""
    if letterbox not in LETTERBOXES:
        raise ValueError(f"letterbox: expected one of {', '.join(LETTERBOXES)}, got {letterbox!r}")
    return LETTERBOX_ALIASES.get(letterbox, letterbox)


def ultralytics_letterbox(
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    *,
    auto: bool = False,
    stride: int = 32,
    scale_fill: bool = False,
) -> AffineTransform:
    """Ultralytics' ``LetterBox(dst_size, auto, scale_fill, stride)`` of ``src_size`` (H, W).

    Same numbers as ``LetterBox.get_params`` (Python ``round``: half to even) and
    ``scale_boxes``. With ``auto`` the result's ``dst_size`` is the resized image padded up to
    a multiple of ``stride`` per side (never more than ``dst_size``); with ``scale_fill`` the
    image is stretched to ``dst_size``. ``matrix`` takes source pixel centres to destination
    pixel centres as ``cv2.resize`` samples them (per-axis scale ``new/src``, offset by the
    pad); ``inverse`` takes box coordinates back: ``x_src = (x - left) * w / new_w``.
    """
    src_h, src_w = int(src_size[0]), int(src_size[1])
    dst_h, dst_w = int(dst_size[0]), int(dst_size[1])
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"image size must be positive, got {src_w}x{src_h}")
    if scale_fill:
        new_w, new_h, top, left = dst_w, dst_h, 0, 0
    else:
        r = min(dst_h / src_h, dst_w / src_w)
        new_w, new_h = max(round(src_w * r), 1), max(round(src_h * r), 1)
        dw, dh = dst_w - new_w, dst_h - new_h
        if auto:
            dw, dh = dw % stride, dh % stride
            dst_w, dst_h = new_w + dw, new_h + dh
        top = round(dh / 2 - 0.1)
        left = round(dw / 2 - 0.1)
    gx, gy = new_w / src_w, new_h / src_h
    matrix = np.array(
        [[gx, 0.0, left + 0.5 * gx - 0.5], [0.0, gy, top + 0.5 * gy - 0.5]],
        dtype=np.float64,
    )
    inverse = np.array([[1.0 / gx, 0.0, -left / gx], [0.0, 1.0 / gy, -top / gy]], dtype=np.float64)
    return AffineTransform(
        matrix, inverse, (src_h, src_w), (dst_h, dst_w), resized=(new_h, new_w), pad=(top, left)
    )


def rect_applies(shapes: Sequence[tuple[int, ...]]) -> bool:
    """Ultralytics' ``same_shapes``: rect padding only when every image of the call has one shape."""
    return len({tuple(int(v) for v in shape[:2]) for shape in shapes}) == 1


def make_transform(
    letterbox: str, src_size: tuple[int, int], dst_size: tuple[int, int], *, stride: int = 32, auto: bool = True
) -> AffineTransform:
    """The transform of geometry ``letterbox`` for one image (``auto``: rect's stride padding applies)."""
    letterbox = check_letterbox(letterbox)
    if letterbox == "warp":
        return letterbox_transform(src_size, dst_size)
    if letterbox == "stretch":
        return ultralytics_letterbox(src_size, dst_size, scale_fill=True)
    return ultralytics_letterbox(src_size, dst_size, auto=letterbox == "rect" and auto, stride=stride)


def batch_transforms(
    letterbox: str, shapes: Sequence[tuple[int, ...]], dst_size: tuple[int, int], *, stride: int = 32
) -> list[AffineTransform]:
    """One transform per image of a batch, all with one ``dst_size`` (the batch's input size).

    ``rect``: stride padding when the batch's images share a shape (``rect_applies``), else the
    full ``dst_size`` as ``square`` -- Ultralytics' rule per predict call, here per batch.
    """
    auto = check_letterbox(letterbox) == "rect" and rect_applies(shapes)
    return [make_transform(letterbox, tuple(shape[:2]), dst_size, stride=stride, auto=auto) for shape in shapes]


def batch_input_size(transforms: Sequence[AffineTransform], default: tuple[int, int]) -> tuple[int, int]:
    """The network input (H, W) of a batch made with ``transforms`` (``default`` for an empty batch)."""
    sizes = {t.dst_size for t in transforms}
    if len(sizes) > 1:
        raise ValueError(f"one batch, several input sizes: {sorted(sizes)}")
    return sizes.pop() if sizes else (int(default[0]), int(default[1]))


def resolve_letterbox(letterbox: str, dynamic_hw: bool) -> str:
    """The geometry that runs: ``rect`` needs a model accepting any H and W, else ``square`` (as Ultralytics)."""
    letterbox = check_letterbox(letterbox)
    if letterbox == "rect" and not dynamic_hw:
        return "square"
    return letterbox
