"""Class names for CenterNet exports: COCO's 80 (ctdet's contiguous order) or ``class_i``."""

from __future__ import annotations

from trtdet.coco import COCO_NAMES

__all__ = ["COCO_NAMES", "class_names_for"]


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """COCO names for an 80-class model, else ``class_0 .. class_{n-1}``."""
    if num_classes == len(COCO_NAMES):
        return COCO_NAMES
    return tuple(f"class_{i}" for i in range(num_classes))
