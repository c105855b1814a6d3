"""The rtdetr model: Ultralytics' RT-DETR exports, their preprocessing (a plain resize) and their decode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trtdet.coco import COCO_NAMES
from trtdet.context import RunContext
from trtdet.detections import Detections
from trtdet.errors import ModelError
from trtdet.geometry import AffineTransform
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.postprocess.decoder import Decoder
from trtdet_yolo.checkpoint import make_exporter
from trtdet_yolo.fixed_set import decode_rtdetr

RTDETR = ModelSpec(
    name="rtdetr",
    class_names=COCO_NAMES,
    input_size=(640, 640),
    channel_order="RGB",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    border_value=114,
    # RTDETRPredictor.pre_transform: LetterBox(auto=False, scale_fill=True), aspect not kept.
    letterbox="stretch",
    stride=32,
    input_multiple=32,  # the trunk downsamples 32x
    conf_threshold=0.25,
    iou_threshold=None,  # a fixed set of queries, no NMS
    max_detections=300,
    description="Ultralytics RT-DETR exports ([B, 300, 6]: normalised cxcywh, score, class); no default file",
    exporter=make_exporter("rtdetr"),
)


def rtdetr_output(output_shapes: dict[str, tuple[int | str | None, ...]], num_classes: int) -> tuple[str, bool] | None:
    """The RT-DETR output's name and whether it holds per-class scores: ``[B, Q, 6]`` (8.4:
    cxcywh, score, class) or ``[B, Q, 4 + nc]`` (older exports); None if there is neither."""
    for name, shape in output_shapes.items():
        if len(shape) == 3 and shape[2] == 6:
            return name, False
    for name, shape in output_shapes.items():
        if len(shape) == 3 and shape[2] == 4 + num_classes:
            return name, True
    return None


class RtdetrDecoder:
    """The ``Decoder`` of the rtdetr model on the CPU (``fixed_set.decode_rtdetr``)."""

    def __init__(self, num_classes: int, conf_threshold: float, max_detections: int) -> None:
        self.num_classes = num_classes
        self.conf_threshold = conf_threshold
        self.max_detections = max_detections
        self.output_name: str | None = None
        self.class_scores = False

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        found = rtdetr_output(output_shapes, self.num_classes)
        if found is None:
            got = ", ".join(f"{n} {list(s)}" for n, s in output_shapes.items())
            raise ModelError(
                f"{source}: output does not fit the rtdetr head: expected [B, Q, 6] (Ultralytics 8.4) or "
                f"[B, Q, {4 + self.num_classes}] for {self.num_classes} classes, got {got}"
            )
        self.output_name, self.class_scores = found

    def _output(self, outputs: dict[str, Any]) -> Any:
        if self.output_name is None:
            self.validate({k: tuple(np.shape(v) if isinstance(v, np.ndarray) else v.shape) for k, v in outputs.items()},
                          "model output")
        assert self.output_name is not None
        return outputs[self.output_name]

    def __call__(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> list[Detections]:
        return decode_rtdetr(np.asarray(self._output(outputs)), transforms,
                             conf_threshold=self.conf_threshold, max_detections=self.max_detections,
                             class_scores=self.class_scores)


class CudaRtdetrDecoder(RtdetrDecoder):
    """The rtdetr ``QueuingDecoder`` on the GPU (``cuda_fixed_set``); same results as ``RtdetrDecoder``."""

    def __init__(self, num_classes: int, conf_threshold: float, max_detections: int) -> None:
        super().__init__(num_classes, conf_threshold, max_detections)
        from trtdet_yolo.cuda_fixed_set import CudaFixedSetDecoder

        self._gpus = {flag: CudaFixedSetDecoder(rtdetr=True, conf_threshold=conf_threshold,
                                                max_detections=max_detections, class_scores=flag) for flag in (False, True)}
        self._gpu = self._gpus[False]

    def queue(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> Any:
        pred = self._output(outputs)
        self._gpu = self._gpus[self.class_scores]
        return self._gpu.queue(pred, transforms)

    def collect(self, queued: Any) -> list[Detections]:
        return self._gpu.collect(queued)

    def __call__(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> list[Detections]:
        return self.collect(self.queue(outputs, transforms))


def _settings(spec: ModelSpec) -> dict[str, Any]:
    return dict(num_classes=spec.num_classes, conf_threshold=spec.conf_threshold, max_detections=spec.max_detections)


def host_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """RT-DETR's numpy decoder (on a GPU without numba the core wraps it in ``HostDecoder``)."""
    return RtdetrDecoder(**_settings(spec))


def cuda_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """RT-DETR's numba.cuda decoder (an ImportError, no numba, makes the core use ``host_decoder``)."""
    import trtdet_yolo.cuda_fixed_set  # noqa: F401 - raises ImportError without numba

    return CudaRtdetrDecoder(**_settings(spec))


RTDETR_MODEL = Model(RTDETR, decoder=host_decoder, cuda_decoder=cuda_decoder)
