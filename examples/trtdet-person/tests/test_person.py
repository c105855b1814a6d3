"""Tests of the trtdet-person example plugin, run as its author would: against installed trtdet.

Run with ``pip install -e examples/trtdet-person && pytest examples/trtdet-person/tests``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import trtdet
from onnx import TensorProto, helper
from trtdet import RunContext
from trtdet.errors import ModelError
from trtdet.plugins import get_model, load_plugins
from trtdet.preprocess.affine import letterbox_transform

from trtdet_person.decode import HEAD_ROWS, PersonDecoder
from trtdet_person.plugin import PERSON_MODEL

#: Grace Hopper's face in matplotlib's grace_hopper.jpg (512x600), checked by eye: from under
#: the cap's brim to the chin, ear to ear.
GRACE_FACE_XYXY = (165, 150, 355, 330)


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    assert image is not None, f"{path}: cannot read"
    return image


@pytest.fixture(scope="module")
def person_detector():
    with trtdet.load("person") as detector:
        yield detector


def test_installed_through_the_trtdet_entry_point_group() -> None:
    (entry,) = [ep for ep in entry_points(group="trtdet") if ep.name == "person"]
    assert entry.value == "trtdet_person.plugin"
    info = get_model("person")
    assert (info.plugin, info.distribution, info.spec) == ("person", "trtdet-person", PERSON_MODEL)


def test_the_model_object_makes_the_person_stages() -> None:
    load_plugins()
    cpu = RunContext.of("cpu")
    person = get_model("person").model
    decoder = person.make_decoder(PERSON_MODEL, cpu)
    assert isinstance(decoder, PersonDecoder)
    yolo = get_model("yolo")
    assert not isinstance(yolo.model.make_decoder(yolo.spec, cpu), PersonDecoder)
    # Preprocessing comes from the core's letterbox preprocessor, configured by the spec.
    preprocessor = person.make_preprocessor(PERSON_MODEL, cpu)
    assert type(preprocessor).__name__ == "WarpAffinePreprocessor"


def test_decoder_on_a_hand_computed_head() -> None:
    """Five anchors in a [1, 84, 5] head, network input 640x640 = the image (identity transform)."""
    head = np.zeros((1, HEAD_ROWS, 5), np.float32)
    anchors = [  # (cx, cy, w, h, best class, its score, person score)
        (100, 100, 40, 80, 0, 0.9, 0.9),  # A: person
        (102, 101, 40, 80, 0, 0.8, 0.8),  # B: same person (IoU ~0.89 with A) -> suppressed
        (400, 300, 60, 120, 0, 0.6, 0.6),  # C: another person
        (250, 250, 50, 50, 2, 0.95, 0.5),  # D: a car whose person score is 0.5 -> not a person
        (500, 500, 30, 60, 0, 0.2, 0.2),  # E: person below conf 0.25
    ]
    for i, (cx, cy, w, h, cls, score, person) in enumerate(anchors):
        head[0, :4, i] = (cx, cy, w, h)
        head[0, 4 + cls, i] = score
        head[0, 4, i] = person
    decoder = PersonDecoder(conf_threshold=0.25, iou_threshold=0.7, max_detections=300)
    decoder.validate({"output0": (1, 84, 5)}, "hand.onnx")
    (found,) = decoder({"output0": head}, [letterbox_transform((640, 640), (640, 640))])
    np.testing.assert_allclose(found.xyxy, [[80, 60, 120, 140], [370, 240, 430, 360]], atol=1e-4)
    np.testing.assert_allclose(found.confidence, [0.9, 0.6])
    assert found.class_id.tolist() == [0, 0]


def test_grace_hopper_is_one_person_around_her_face(person_detector, grace_hopper: np.ndarray) -> None:
    found = person_detector(grace_hopper)
    assert person_detector.class_names == ("person",)  # not the file's 80 COCO names
    assert len(found) == 1 and found.class_id.tolist() == [0]
    assert found.confidence[0] > 0.8
    x1, y1, x2, y2 = found.xyxy[0]
    fx1, fy1, fx2, fy2 = GRACE_FACE_XYXY
    assert x1 <= fx1 and y1 <= fy1 and x2 >= fx2 and y2 >= fy2, f"person box {found.xyxy[0]} misses her face"
    # She fills the portrait: the box covers most of the 512x600 image.
    assert (x2 - x1) * (y2 - y1) > 0.6 * 512 * 600


def test_matches_the_core_yolo_model_restricted_to_persons(person_detector, grace_hopper: np.ndarray) -> None:
    """Ultralytics' classes=[0] semantics: the persons of the full COCO decode, same boxes and scores."""
    small = cv2.resize(grace_hopper, (256, 300), interpolation=cv2.INTER_AREA)
    crowd = np.concatenate([np.concatenate([small] * 3, axis=1)] * 2, axis=0)  # six portraits, 768x600
    blank = np.full((480, 640, 3), 127, np.uint8)
    images = [grace_hopper, crowd, blank]
    with trtdet.load("yolo", letterbox="square") as coco:  # the person plugin letterboxes square
        results = person_detector(images)
        assert [len(r) for r in results] == [1, 6, 0]
        for persons, everything in zip(results, coco(images), strict=True):
            reference = everything[everything.class_id == 0]
            order = np.argsort(-reference.confidence, kind="stable")
            np.testing.assert_allclose(persons.xyxy, reference.xyxy[order], atol=0.05)
            np.testing.assert_allclose(persons.confidence, reference.confidence[order], atol=1e-5)


def _wrong_head_onnx(path: Path) -> Path:
    """A tiny valid ONNX whose output [1, 3, 1024] cannot be a YOLO COCO head."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 3, 32 * 32])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])],
        "wrong_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 1024])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_an_onnx_with_another_head_is_one_clear_error(tmp_path: Path) -> None:
    path = _wrong_head_onnx(tmp_path / "wrong.onnx")
    with pytest.raises(ModelError) as error:
        trtdet.load("person", onnx=path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and "expected [B, 84, N]" in message and "got output0 [1, 3, 1024]" in message


def test_cli_run_json(grace_hopper: np.ndarray, tmp_path: Path) -> None:
    image = tmp_path / "grace.jpg"
    cv2.imwrite(str(image), grace_hopper)
    result = subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", "run", "--model", "person", "--source", str(image), "--json", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [d["label"] for d in record["detections"]] == ["person"]
    assert record["error"] is None


def test_the_person_head_build_step_trims_the_head_and_keeps_the_detections(grace_hopper, tmp_path):
    """``--build-option person_head=person`` rewrites the ONNX so the engine outputs [B, 5, N];
    on onnxruntime both files give the same persons (the reference is the untouched export)."""
    from trtdet.build_options import check_build_options
    from trtdet.plugins import list_build_steps

    from trtdet_person.build_step import PERSON_HEAD_STEP, trim_to_persons
    from trtdet_person.plugin import default_model_path

    load_plugins()
    assert list_build_steps()["person_head"].step is PERSON_HEAD_STEP
    check_build_options({"person_head": "person"})
    source = onnx.load(str(default_model_path()))
    assert PERSON_HEAD_STEP.applies(source, PERSON_MODEL)
    assert not PERSON_HEAD_STEP.applies(source, get_model("yolo").spec)  # only this plugin's model
    trimmed = trim_to_persons(source)
    assert [d.dim_value or d.dim_param for d in trimmed.graph.output[0].type.tensor_type.shape.dim][1] == 5
    onnx.checker.check_model(trimmed)
    path = tmp_path / "person_head.onnx"
    onnx.save(trimmed, str(path))
    full = trtdet.load("person", backend="onnxruntime")(grace_hopper)
    trim = trtdet.load("person", onnx=path, backend="onnxruntime")(grace_hopper)
    assert len(full) > 0 and len(trim) == len(full)
    np.testing.assert_allclose(trim.xyxy, full.xyxy, atol=1e-3)
    np.testing.assert_allclose(trim.confidence, full.confidence, atol=1e-6)


def test_a_tensorrt_build_with_the_person_head_records_the_choice_and_outputs_five_rows(tmp_path):
    """The step runs inside a real engine build (TensorRT-RTX builds on the CPU machine)."""
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed (pip install 'trtdet[rtx]')")
    from trtdet.engines.artifact_cache import ArtifactCache
    from trtdet.engines.tensorrt.builder import BuildConfig, build_engine

    from trtdet_person.plugin import default_model_path

    load_plugins()
    config = BuildConfig(max_batch=1, build_options={"person_head": "person"}, trt="rtx")
    result = build_engine(default_model_path(), PERSON_MODEL, config, cache=ArtifactCache(tmp_path))
    assert result.metadata.build_options == {"person_head": "person"}
    (output,) = result.metadata.outputs
    assert output.name == "person_head" and output.shape[1] == 5
