"""`trtdet run` against Ultralytics' own predictor on issue 25's families, on the CPU (onnxruntime).

The reference is Ultralytics 8.4.190 itself, recorded with its versions in
``tests/data/ultralytics/families_detections.json`` by ``tests/data/make_ultralytics_families.py``
on the files of ``ultralytics_cases.py``, each predicted alone with ``predict``'s defaults:

* ``yolo11n_rect``: the shipped YOLO11n (a dynamic export) as ``yolo predict`` runs it by
  default, ``LetterBox(auto=True)`` (384x640-style inputs), with the input shape it used;
* ``yolo26_e2e`` / ``yolov10_e2e``: end-to-end ``[B, 300, 6]`` exports (``nms=False``);
* ``yolo26_o2m``: YOLO26 exported the default way (one-to-many, decoded with NMS like v8);
* ``rtdetr``: a narrow RT-DETR (the ``RTDETRDecoder`` head; rtdetr-l is too large to commit),
  resized to 640x640 without keeping the aspect.

Every Ultralytics detection must have a trtdet detection of the same class with IoU >= 0.95 and
a score within 0.01, and trtdet must have no detection >= 0.25 that Ultralytics lacks. For the
fixed-set heads the whole output above ``conf=0.001`` is compared too (no NMS cut hides anything).
Random weights also give inverted boxes (x2 < x1: the end-to-end heads do not sort corners) and
boxes thinner than a pixel, whose IoU means nothing: those must equal Ultralytics' corner by
corner within 0.5 pixel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.trtdet_yolo.test_ultralytics_parity import IOU, SCORE, iou
from tests.trtdet_yolo.ultralytics_cases import CASES, make_cases
from trtdet.cli.main import cli
from trtdet.preprocess.letterbox import batch_transforms

DATA = Path(__file__).resolve().parents[1] / "data" / "ultralytics"
REFERENCE = json.loads((DATA / "families_detections.json").read_text())
FAMILIES = REFERENCE["families"]
#: Family -> (trtdet model name, ONNX given with --onnx, or None for the shipped default).
MODELS = {
    "yolo11n_rect": ("yolo", None),
    "yolo26_e2e": ("yolo", DATA / "yolo26_e2e_dynamic.onnx"),
    "yolo26_o2m": ("yolo", DATA / "yolo26_o2m_dynamic.onnx"),
    "yolov10_e2e": ("yolo", DATA / "yolov10_e2e_dynamic.onnx"),
    "rtdetr": ("rtdetr", DATA / "rtdetr_tiny_dynamic.onnx"),
}


def run_trtdet(family: str, files: dict[str, Path], *options: str) -> dict[str, dict]:
    """`trtdet run` with the model's defaults over ``files``; each JSON record by case name."""
    model, onnx = MODELS[family]
    args = ["run", "--model", model, "--json", "-", "--quiet", *options]
    if onnx is not None:
        args += ["--onnx", str(onnx)]
    for path in files.values():
        args += ["--source", str(path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = {json.loads(line)["source"]: json.loads(line) for line in result.stdout.splitlines()}
    return {name: records[str(path)] for name, path in files.items()}


def same_box(a: list[float], b: list[float]) -> bool:
    """IoU >= 0.95 for boxes at least a pixel wide and high; corners within 0.5 pixel for thinner,
    empty or inverted ones, whose IoU the JSON's rounding (0.01 pixel) alone can sink."""
    if min(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]) >= 1.0:
        return iou(a, b) >= IOU
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 0.5


def parity_problems(name: str, ours: list[dict], theirs: list[dict]) -> list[str]:
    """``test_ultralytics_parity.parity_problems`` with ``same_box`` as the box test."""
    problems = []
    unmatched = list(range(len(ours)))
    for ref in sorted(theirs, key=lambda d: -d["score"]):
        candidates = [i for i in unmatched if ours[i]["class_id"] == ref["class_id"] and same_box(ours[i]["box"], ref["box"])]
        if not candidates:
            problems.append(f"{name}: Ultralytics' {ref} has no trtdet match")
            continue
        best = min(candidates, key=lambda i: abs(ours[i]["score"] - ref["score"]))
        unmatched.remove(best)
        if abs(ours[best]["score"] - ref["score"]) > SCORE:
            problems.append(f"{name}: score {ours[best]['score']:.4f} vs Ultralytics' {ref['score']:.4f} ({ref})")
    problems += [f"{name}: extra trtdet detection {ours[i]}" for i in unmatched if ours[i]["score"] >= 0.25]
    return problems


def assert_parity(records: dict[str, dict], reference: dict[str, dict]) -> None:
    problems = []
    for name, record in records.items():
        ref = reference[name]
        assert record["error"] is None, record
        assert (record["height"], record["width"]) == (ref["height"], ref["width"]), name
        problems += parity_problems(name, record["detections"], ref["detections"])
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} problems)"


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(tmp_path_factory.mktemp("ultralytics-families"))


def test_the_reference_is_what_the_issue_asks_for():
    assert REFERENCE["versions"]["ultralytics"] == "8.4.190"
    assert set(FAMILIES) == set(MODELS)
    for family in FAMILIES.values():
        assert set(family["cases"]) == {case.name for case in CASES} and len(family["cases"]) >= 12
    layouts = {name: family["outputs"][0][1] for name, family in FAMILIES.items()}
    assert layouts["yolo26_e2e"][1:] == [300, 6] and layouts["yolov10_e2e"][1:] == [300, 6]
    assert layouts["yolo26_o2m"][1] == 4 + FAMILIES["yolo26_o2m"]["nc"] and layouts["rtdetr"][2] == 6
    # the references discriminate: detections in most families, scores spread, not tied
    for name in ("yolo11n_rect", "yolo26_e2e", "yolov10_e2e", "rtdetr"):
        scores = [d["score"] for case in FAMILIES[name]["cases"].values() for d in case["detections"]]
        assert len(scores) >= 10 and len(set(scores)) >= len(scores) // 3, name
    # rect mode used inputs smaller than 640x640 on non-square photos, as the issue describes
    shapes = {tuple(case["input_shape"]) for case in FAMILIES["yolo11n_rect"]["cases"].values()}
    assert (640, 640) in shapes and any(h < 640 for h, _ in shapes)
    for bytes_ in (family.get("bytes", 0) for family in FAMILIES.values()):
        assert bytes_ < 4_000_000


@pytest.mark.parametrize("family", ["yolo11n_rect", "yolo26_e2e", "yolo26_o2m", "yolov10_e2e", "rtdetr"])
def test_letterbox_shapes_are_the_ones_ultralytics_used(family):
    """trtdet's geometry for one image at a time gives Ultralytics' network input shape."""
    letterbox = "stretch" if family == "rtdetr" else "rect"
    for name, case in FAMILIES[family]["cases"].items():
        (transform,) = batch_transforms(letterbox, [(case["height"], case["width"])], (640, 640))
        assert list(transform.dst_size) == case["input_shape"], (family, name)


@pytest.mark.parametrize("family", ["yolo11n_rect", "yolo26_e2e", "yolo26_o2m", "yolov10_e2e", "rtdetr"])
def test_cpu_detections_match_ultralytics_defaults(family, case_files):
    """`trtdet run --model yolo|rtdetr` with defaults gives what `yolo predict` gives by default."""
    assert_parity(run_trtdet(family, case_files), FAMILIES[family]["cases"])


@pytest.mark.parametrize("family", ["yolo26_e2e", "yolov10_e2e", "rtdetr"])
def test_the_whole_fixed_set_matches(family, case_files):
    low = FAMILIES[family]["low_conf"]
    files = {name: case_files[name] for name in low["cases"]}
    records = run_trtdet(family, files, "--conf", str(low["conf"]))
    assert sum(len(r["detections"]) for r in records.values()) >= 100
    assert_parity(records, low["cases"])


def test_rect_uses_smaller_inputs_for_a_batch_of_one_shape(case_files):
    """A camera-style stream (one shape) runs at the stride-padded size; mixed shapes run square."""
    import numpy as np

    import trtdet

    frame = np.zeros((1080, 1920, 3), np.uint8)
    with trtdet.load("yolo", batch=2) as detector:
        assert detector.spec.letterbox == "rect"
        batch = detector.preprocessor([frame, frame])
        assert batch.tensor.shape == (2, 3, 384, 640)
        assert detector.preprocessor([frame, frame[:500]]).tensor.shape == (2, 3, 640, 640)


def test_a_static_export_falls_back_to_square():
    """Ultralytics pads to a multiple of the stride only for models that accept any size."""
    import trtdet

    with trtdet.load("yolo", onnx=DATA / "yolo11_static.onnx") as detector:
        assert detector.spec.letterbox == "square"


def test_symbolic_output_dims_are_resolved_by_a_trial_run(tmp_path):
    """Unsimplified exports name every output dim ('batch', 'Concatoutput0_dim_1', ...): a trial run decides."""
    import numpy as np
    from onnx import TensorProto, helper, save

    import trtdet

    # images [B, 3, 20, 30] reshaped to [B, 300, 6]: an end-to-end layout, declared as [b, n, m]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 300, 6])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])], "e2e_symbolic",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, 20, 30])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["b", "n", "m"])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "e2e_symbolic.onnx"
    save(model, str(path))
    with trtdet.load("yolo", onnx=path) as detector:
        assert detector.decoder.head == "e2e"
        assert detector.spec.input_size == (20, 30) and detector.spec.letterbox == "square"
        found = detector(np.full((40, 60, 3), 255, np.uint8))  # every pixel 1.0: rows (1, 1, 1, 1, 1, 1)
        assert len(found) == 300 and set(found.class_id.tolist()) == {1}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolo26_e2e", "yolov10_e2e"])
def test_the_torch_conversion_gives_onnxruntimes_detections(family, case_files):
    """The ONNX -> torch conversion the compiled GPU engines are built from (TopK included) against
    onnxruntime on the same file, both square (the converted network has a fixed input size).

    Not yolo26_o2m: its redrawn classification layer gives one box of the horse photo two class
    scores equal to float32 rounding, and the two runtimes' last-bit differences pick different
    argmaxes (same box, same score); its tensors match onnxruntime in test_models."""
    files = {name: case_files[name] for name in list(case_files)[:8]}
    reference = run_trtdet(family, files, "--letterbox", "square")
    converted = run_trtdet(family, files, "--letterbox", "square", "--backend", "torch")
    assert sum(len(r["detections"]) for r in reference.values()) >= 5
    problems = []
    for name, record in converted.items():
        assert record["error"] is None, record
        problems += parity_problems(name, record["detections"], reference[name]["detections"])
    assert not problems, "\n".join(problems[:20])


def _records(detector, files: dict[str, Path]) -> dict[str, dict]:
    """``run_trtdet``'s records from a loaded detector (image by image, as Ultralytics predicted them)."""
    import cv2

    records = {}
    for name, path in files.items():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        found = detector(image)
        records[name] = {
            "error": None, "height": image.shape[0], "width": image.shape[1],
            "detections": [{"box": [float(v) for v in box], "score": float(s), "class_id": int(c)}
                           for box, s, c in zip(found.xyxy, found.confidence, found.class_id, strict=True)],
        }
    return records


@pytest.mark.slow
def test_rtdetr_through_the_torch_conversion_matches_ultralytics(case_files):
    """RT-DETR converted to torch (the network the GPU engines are built from) gives Ultralytics'
    recorded detections on every case, as onnxruntime does (test_cpu_detections_match_ultralytics_defaults),
    and the whole fixed set at low conf."""
    import trtdet

    _model, onnx = MODELS["rtdetr"]
    with trtdet.load("rtdetr", onnx=str(onnx), backend="torch") as detector:
        assert detector.spec.letterbox == "stretch"
        assert_parity(_records(detector, case_files), FAMILIES["rtdetr"]["cases"])
    low = FAMILIES["rtdetr"]["low_conf"]
    with trtdet.load("rtdetr", onnx=str(onnx), backend="torch", conf=low["conf"]) as detector:
        records = _records(detector, {name: case_files[name] for name in low["cases"]})
    assert sum(len(r["detections"]) for r in records.values()) >= 100
    assert_parity(records, low["cases"])
