"""Drawing detections onto images for annotated output."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from trtdet.detections import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image: np.ndarray, detections: Detections, class_names: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` with each box and its ``label score`` drawn."""
    canvas = image.copy()
    thickness = max(1, round(min(image.shape[:2]) / 400))
    font_scale = max(0.4, min(image.shape[:2]) / 1200)
    for record, cls in zip(detections.to_records(class_names), detections.class_id.tolist(), strict=True):
        x1, y1, x2, y2 = (round(v) for v in record["box"])
        colour = class_colour(cls)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = f"{record['label']} {record['score']:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - th - baseline - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + baseline + 2), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return canvas
