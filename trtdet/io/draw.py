"""Drawing detections onto images: ``trtdet.draw``, also what ``trtdet run --output`` writes.

Boxes are drawn lowest score first, so a higher-scoring box and its label end up on top.
Labels are placed best score first, each at the first spot that stays inside the image and
overlaps no label placed before it: above the box, inside its top edge, below it, then
stepping down; a label with no free spot goes above its box anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from trtdet.detections import TRACK_ID, Detections
from trtdet.io.inputs import ImageInput, as_image

FONT = cv2.FONT_HERSHEY_SIMPLEX

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive ends)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box: Rect, size: tuple[int, int], image_size: tuple[int, int], taken: Sequence[Rect]) -> Rect:
    """Where a ``size`` (w, h) label of ``box`` goes in a ``image_size`` (w, h) image, clear of ``taken``."""
    width, height = image_size
    w, h = min(size[0], width), min(size[1], height)
    x = min(max(box[0], 0), width - w)

    def at(y: int) -> Rect:
        y = min(max(y, 0), height - h)
        return (x, y, x + w, y + h)

    candidates = [at(box[1] - h), at(box[1]), at(box[3])]
    candidates += [at(y) for y in range(box[1] + h, height - h + 1, h)]
    for rect in candidates:
        if not any(_overlaps(rect, other) for other in taken):
            return rect
    return candidates[0]


def draw(image: ImageInput, detections: Detections, class_names: Sequence[str] | None = None) -> np.ndarray:
    """A copy of ``image`` (BGR array, path or PIL image) with each box and its ``label score`` drawn.

    With track identities (``--track``) labels read ``#id label score``.
    """
    canvas = np.ascontiguousarray(as_image(image)).copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 400))
    font_scale = max(0.4, min(height, width) / 1200)
    labels = detections.labels(class_names)
    tracks = detections.data.get(TRACK_ID)
    texts = [
        (f"#{int(tracks[i])} " if tracks is not None else "") + f"{labels[i]} {float(detections.confidence[i]):.2f}"
        for i in range(len(detections))
    ]
    boxes = [tuple(round(float(v)) for v in box) for box in detections.xyxy]
    best_first = np.argsort(-detections.confidence, kind="stable").tolist()
    spots: dict[int, Rect] = {}
    for i in best_first:
        (tw, th), baseline = cv2.getTextSize(texts[i], FONT, font_scale, thickness)
        spots[i] = place_label(boxes[i], (tw + 2, th + baseline + 2), (width, height), list(spots.values()))
    for i in reversed(best_first):  # lowest score first: the best ends on top
        colour = class_colour(int(detections.class_id[i]))
        x1, y1, x2, y2 = boxes[i]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)  # axis-aligned: no anti-aliasing needed
    for i in reversed(best_first):
        colour = class_colour(int(detections.class_id[i]))
        lx1, ly1, lx2, ly2 = spots[i]
        cv2.rectangle(canvas, (lx1, ly1), (lx2 - 1, ly2 - 1), colour, -1)
        (_, th), _ = cv2.getTextSize(texts[i], FONT, font_scale, thickness)
        cv2.putText(canvas, texts[i], (lx1 + 1, ly1 + th + 1), FONT, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return canvas


#: The name ``trtdet.io.sinks`` used before ``draw`` was public.
draw_detections = draw
