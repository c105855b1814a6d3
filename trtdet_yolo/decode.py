"""YOLO head decoding on the CPU: Ultralytics v8/11 and v5 layouts with class-aware NMS, and the
end-to-end ``[B, 300, 6]`` layout of YOLO26/YOLOv10 (``nms=False``) without NMS (``fixed_set``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from trtdet.detections import Detections
from trtdet.errors import ModelError
from trtdet.geometry import AffineTransform
from trtdet.postprocess import nms

Head = Literal["v8", "v5", "e2e"]

#: Rows of an end-to-end output: x1, y1, x2, y2, score, class.
END2END_COLUMNS = 6
#: An end-to-end head has at most this many (fixed) rows: Ultralytics exports ``max_det`` (300) of them.
END2END_MAX_ROWS = 1000

#: Candidates kept for NMS, as Ultralytics' ``max_nms``.
MAX_NMS_CANDIDATES = 30000


def detect_head(shape: Sequence[int | str | None], num_classes: int) -> Head | None:
    """Which head a ``[B, a, b]`` output is: v8 ``[B, 4+nc, N]``, v5 ``[B, N, 5+nc]`` or
    end-to-end ``[B, Q, 6]`` (YOLO26/YOLOv10 ``nms=False``; Q fixed, at most ``END2END_MAX_ROWS``).

    A 1-class v5 head is also ``[B, N, 6]``: it is end-to-end only when N is a fixed number no
    larger than ``END2END_MAX_ROWS`` (v5 heads have thousands of anchors or a dynamic count).
    """
    if len(shape) != 3:
        return None
    if shape[1] == 4 + num_classes:
        return "v8"
    if shape[2] == END2END_COLUMNS:
        rows = shape[1]
        if num_classes != 1 or (isinstance(rows, int) and rows <= END2END_MAX_ROWS):
            return "e2e"
    if shape[2] == 5 + num_classes:
        return "v5"
    return None


def _candidates(
    prediction: np.ndarray, head: Head, num_classes: int, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (xywh), scores and classes of one image's anchors above the threshold."""
    if head == "v8":
        rows = prediction.T  # [N, 4 + nc]
        class_scores = rows[:, 4 : 4 + num_classes]
        class_id = class_scores.argmax(1)
        score = class_scores[np.arange(len(rows)), class_id]
        keep = score > conf_threshold
    else:
        rows = prediction  # [N, 5 + nc]
        objectness = rows[:, 4]
        class_scores = rows[:, 5 : 5 + num_classes] * objectness[:, None]
        class_id = class_scores.argmax(1)
        score = class_scores[np.arange(len(rows)), class_id]
        keep = (objectness > conf_threshold) & (score > conf_threshold)
    return rows[keep, :4], score[keep], class_id[keep]


def decode_yolo(
    output: np.ndarray,
    transforms: Sequence[AffineTransform],
    *,
    head: Head,
    num_classes: int,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    agnostic: bool = False,
) -> list[Detections]:
    """Decode a batch of raw YOLO outputs into detections in original-image pixels.

    Follows Ultralytics' ``non_max_suppression`` (single label per anchor): score is the
    best class score (v5: times objectness), candidates strictly above ``conf_threshold``,
    the best ``MAX_NMS_CANDIDATES`` go to class-aware NMS, the best ``max_detections``
    survive (``agnostic``: NMS across classes, Ultralytics' ``agnostic=True``). Boxes are
    mapped through each image's inverse letterbox and clipped.
    """
    results = []
    for prediction, transform in zip(output, transforms, strict=True):
        xywh, score, class_id = _candidates(np.asarray(prediction, np.float32), head, num_classes, conf_threshold)
        if len(score) > MAX_NMS_CANDIDATES:
            top = np.argsort(-score, kind="stable")[:MAX_NMS_CANDIDATES]
            xywh, score, class_id = xywh[top], score[top], class_id[top]
        xyxy = np.empty_like(xywh)
        xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
        xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
        keep = nms(xyxy, score, None if agnostic else class_id, iou_threshold, max_keep=max_detections)
        results.append(Detections(transform.boxes_to_source(xyxy[keep]), score[keep], class_id[keep]))
    return results


class YoloDecoder:
    """The ``Decoder`` of the yolo model: picks the head layout from the output shape."""

    def __init__(
        self, num_classes: int, conf_threshold: float, iou_threshold: float, max_detections: int, agnostic: bool = False
    ) -> None:
        self.num_classes = num_classes
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.agnostic = agnostic
        self.head: Head | None = None
        self.output_name: str | None = None

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        nc = self.num_classes
        for name, shape in output_shapes.items():
            head = detect_head(shape, nc)
            if head is not None:
                self.head, self.output_name = head, name
                return
        got = ", ".join(f"{n} {list(s)}" for n, s in output_shapes.items())
        raise ModelError(
            f"{source}: output does not fit the yolo head: expected [B, {4 + nc}, N] (v8/11), "
            f"[B, N, {5 + nc}] (v5) for {nc} classes, or [B, 300, 6] (end-to-end YOLO26/YOLOv10), got {got}"
        )

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]:
        if self.head is None or self.output_name is None:
            self.validate({k: tuple(np.shape(v)) for k, v in outputs.items()}, "model output")
        assert self.head is not None and self.output_name is not None
        if self.head == "e2e":
            from trtdet_yolo.fixed_set import decode_end2end

            return decode_end2end(
                np.asarray(outputs[self.output_name]), transforms,
                conf_threshold=self.conf_threshold, max_detections=self.max_detections,
            )
        return decode_yolo(
            np.asarray(outputs[self.output_name]),
            transforms,
            head=self.head,
            num_classes=self.num_classes,
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            agnostic=self.agnostic,
        )
