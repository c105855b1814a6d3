"""Person-only decoding of a YOLO v8/11 COCO head, written against trtdet's public contracts.

The head is ``[B, 4 + 80, N]``: per anchor a box (cx, cy, w, h) in network-input pixels and
80 COCO class scores (already sigmoid). An anchor is a person when person (COCO class 0) is
its best class and that score is above the threshold, exactly what Ultralytics keeps with
``classes=[0]``; overlapping persons are suppressed with trtdet's NMS (``trtdet.postprocess.nms``).
Outputs arrive as numpy arrays (on a CUDA pipeline the plugin wraps this decoder in
``trtdet.postprocess.HostDecoder``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from trtdet.detections import Detections
from trtdet.errors import ModelError
from trtdet.geometry import AffineTransform
from trtdet.postprocess import nms

#: COCO class index of "person" and the number of COCO classes in the head.
PERSON = 0
COCO_CLASSES = 80
HEAD_ROWS = 4 + COCO_CLASSES
#: The ``person_head=person`` build step's head: the box and the person score (0 where another
#: class is best), see ``trtdet_person.build_step``.
PERSON_ROWS = 4 + 1


def decode_persons(
    prediction: np.ndarray,
    transform: AffineTransform,
    *,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> Detections:
    """Persons of one image from its ``[84, N]`` (or trimmed ``[5, N]``) head, boxes in original-image pixels."""
    class_scores = prediction[4:]
    person_score = class_scores[PERSON]
    keep = (class_scores.argmax(axis=0) == PERSON) & (person_score > conf_threshold)
    if not keep.any():
        return Detections.empty()
    cx, cy, w, h = prediction[:4, keep]
    score = person_score[keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kept = nms(xyxy, score, None, iou_threshold, max_keep=max_detections)  # one class: indices, best first
    return Detections(transform.boxes_to_source(xyxy[kept]), score[kept], np.full(len(kept), PERSON, np.int64))


class PersonDecoder:
    """trtdet's ``Decoder`` protocol for the person model: ``validate`` once, then call per batch."""

    def __init__(self, conf_threshold: float = 0.25, iou_threshold: float = 0.7, max_detections: int = 300) -> None:
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.output_name: str | None = None

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        """Pick the ``[B, 84, N]`` (or trimmed ``[B, 5, N]``) output; anything else is a ModelError naming ``source``."""
        for name, shape in output_shapes.items():
            if len(shape) == 3 and shape[1] in (HEAD_ROWS, PERSON_ROWS):
                self.output_name = name
                return
        got = ", ".join(f"{name} {list(shape)}" for name, shape in output_shapes.items()) or "no outputs"
        raise ModelError(
            f"{source}: output does not fit the person decoder (YOLO v8/11 COCO head): "
            f"expected [B, {HEAD_ROWS}, N] (or the trimmed [B, {PERSON_ROWS}, N]), got {got}"
        )

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]:
        if self.output_name is None:
            self.validate({name: tuple(np.shape(value)) for name, value in outputs.items()}, "model output")
        batch = np.asarray(outputs[self.output_name], dtype=np.float32)  # type: ignore[index]
        return [
            decode_persons(
                prediction,
                transform,
                conf_threshold=self.conf_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )
            for prediction, transform in zip(batch, transforms, strict=True)
        ]
