"""Class-aware greedy non-maximum suppression on the CPU, shared by every model plugin.

The rule is torchvision's ``batched_nms``: boxes are visited best score first (equal scores:
lower index first), and a kept box suppresses every later box of the same class whose IoU
with it is greater than ``iou_threshold``. IoU is computed in float64; a pair with no union
has IoU 0. GPU decoders that suppress on the device (YOLO's kernel) follow the same rule.
"""

from __future__ import annotations

import numpy as np


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` xyxy box with ``(N, 4)`` boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Indices kept by greedy NMS per class, highest score first.

    ``boxes`` are ``(N, 4)`` xyxy, ``scores`` ``(N,)``, ``class_ids`` ``(N,)`` (None: one
    class, i.e. class-agnostic NMS). A box is suppressed by a kept box of the same class whose
    IoU with it is greater than ``iou_threshold`` (torchvision's rule). Equal scores keep the
    lower index first, so boxes already in rank order keep that order. At most ``max_keep``
    indices are returned (None: all survivors).
    """
    scores = np.asarray(scores)
    if class_ids is None:
        class_ids = np.zeros(len(scores), dtype=np.int64)
    class_ids = np.asarray(class_ids)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    boxes = np.asarray(boxes).astype(np.float64)
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[rank + 1 :]
        rest = rest[~suppressed[rest] & (class_ids[rest] == class_ids[i])]
        if len(rest):
            suppressed[rest[box_iou_one_to_many(boxes[i], boxes[rest]) > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)
