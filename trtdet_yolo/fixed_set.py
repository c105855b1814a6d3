"""Decoding detectors whose output is a fixed set of detections (no NMS): YOLO26/YOLOv10 end to end, RT-DETR.

* End-to-end YOLO (``export(nms=False)`` of YOLO26 and YOLOv10): ``[B, Q, 6]`` rows
  ``x1, y1, x2, y2, score, class`` in network-input pixels, best first (Q = 300, the export's
  ``max_det``). Ultralytics' ``non_max_suppression`` with ``end2end`` keeps
  ``pred[pred[:, 4] > conf][:max_det]``; ``scale_boxes`` maps the boxes back (clipped).
* RT-DETR (``RTDETR(...).export``, Ultralytics 8.4): ``[B, Q, 6]`` rows ``cx, cy, w, h, score,
  class``, boxes normalised to the input (0..1), the head's top-k over queries x classes of
  the sigmoid scores, best first (``RTDETRDecoder.postprocess``). Older exports give
  ``[B, Q, 4 + nc]`` (boxes, then per-class scores): the best class per query is taken, as
  8.3's predictor did. ``RTDETRPredictor.postprocess`` keeps ``score > conf`` in order, then
  the first ``max_det``, and multiplies the boxes by the original image's width and height
  (the input was stretched to 640x640): no NMS and no clipping.

Pure numpy; the numba.cuda twin is ``trtdet_yolo.cuda_fixed_set``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trtdet.detections import Detections
from trtdet.geometry import AffineTransform


def decode_end2end(
    output: np.ndarray, transforms: Sequence[AffineTransform], *, conf_threshold: float = 0.25, max_detections: int = 300
) -> list[Detections]:
    """Detections of an end-to-end ``[B, Q, 6]`` YOLO output, as Ultralytics' end2end postprocess."""
    results = []
    for rows, transform in zip(np.asarray(output, np.float32), transforms, strict=True):
        rows = rows[rows[:, 4] > np.float32(conf_threshold)][:max_detections]
        boxes = transform.boxes_to_source(rows[:, :4])
        results.append(Detections(boxes, rows[:, 4].copy(), rows[:, 5].astype(np.int64)))
    return results


def decode_rtdetr(
    output: np.ndarray, transforms: Sequence[AffineTransform], *, conf_threshold: float = 0.25, max_detections: int = 300,
    class_scores: bool = False,
) -> list[Detections]:
    """Detections of an RT-DETR output, as ``RTDETRPredictor.postprocess``.

    ``class_scores``: the output is ``[B, Q, 4 + nc]`` (per-class scores, older exports), else
    ``[B, Q, 6]`` (score, class). Boxes go from normalised input coordinates to input pixels
    (float32 ``(cx - w/2) * W_in``) and back through the image's transform (for the ``stretch``
    letterbox that is ``x * W_src``, Ultralytics' arithmetic up to float rounding); not clipped,
    as Ultralytics leaves them.
    """
    results = []
    for rows, transform in zip(np.asarray(output, np.float32), transforms, strict=True):
        if class_scores:
            scores = rows[:, 4:]
            class_id = scores.argmax(1)
            score = scores[np.arange(len(rows)), class_id]
        else:
            score, class_id = rows[:, 4], rows[:, 5].astype(np.int64)
        keep = np.flatnonzero(score > np.float32(conf_threshold))[:max_detections]
        cx, cy, half_w, half_h = rows[keep, 0], rows[keep, 1], rows[keep, 2] / 2, rows[keep, 3] / 2
        in_h, in_w = transform.dst_size
        xyxy = np.stack([(cx - half_w) * np.float32(in_w), (cy - half_h) * np.float32(in_h),
                         (cx + half_w) * np.float32(in_w), (cy + half_h) * np.float32(in_h)], axis=1)
        boxes = transform.boxes_to_source(xyxy.astype(np.float32), clip=False)
        results.append(Detections(boxes, score[keep].copy(), class_id[keep].astype(np.int64)))
    return results
