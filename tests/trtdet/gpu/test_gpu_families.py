"""Issue 25's families on CUDA against Ultralytics' recorded ``predict``: the CPU check of
``tests/trtdet_yolo/test_ultralytics_families.py`` through the GPU letterbox kernel, the compiled
engines and the numba.cuda fixed-set decoder.

The compiled engines (torch, inductor) have a fixed input, one per rect shape bucket
(``trtdet.engines.buckets``): ``test_compiled_engines_match_ultralytics`` keeps to the cases
Ultralytics ran at 640x640 (one package per family), the rect tests at the end run other
buckets. RT-DETR stretches every image to 640x640: all cases. onnxruntime's CUDA provider takes
any shape and so runs rect: all cases. fp32 (fp16 moves scores by more than 0.01 on its own).
Needs the case photos (``TRTDET_KERNEL_ASSETS`` where scikit-image/matplotlib are absent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trtdet_yolo.test_ultralytics_families import FAMILIES, assert_parity, run_trtdet
from tests.trtdet_yolo.ultralytics_cases import make_cases

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(tmp_path_factory.mktemp("ultralytics-families-gpu"))


#: RT-DETR stretches every case to 640x640, so all its cases are here.
@pytest.mark.parametrize("decode", ["cpu", "cuda"])
@pytest.mark.parametrize("backend", ["torch", "inductor"])
@pytest.mark.parametrize("family", ["yolo26_e2e", "yolov10_e2e", "yolo26_o2m", "yolo11n_rect", "rtdetr"])
def test_compiled_engines_match_ultralytics(case_files, family, backend, decode):
    cases = FAMILIES[family]["cases"]
    names = [n for n, c in cases.items() if c["input_shape"] == [640, 640]]
    if decode == "cuda":
        # nvJPEG rounds differently from libjpeg-turbo (test_gpu_parity.py): JPEG cases are strict
        # only when OpenCV decodes them (RT-DETR's 640x640 cases include the JPEG photos)
        names = [n for n in names if case_files[n].suffix.lower() not in (".jpg", ".jpeg")]
    assert names
    files = {name: case_files[name] for name in names}
    records = run_trtdet(family, files, "--device", "cuda", "--backend", backend, "--precision", "fp32",
                         "--decode", decode)
    assert_parity(records, {name: cases[name] for name in names})


@pytest.mark.parametrize("family", ["yolo26_e2e", "yolo11n_rect", "rtdetr"])
def test_onnxruntime_cuda_runs_rect_like_ultralytics(case_files, family):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider")
    records = run_trtdet(family, case_files, "--device", "cuda", "--backend", "onnxruntime", "--decode", "cpu")
    assert_parity(records, FAMILIES[family]["cases"])


@pytest.mark.parametrize("family", ["yolo26_e2e", "yolov10_e2e"])
def test_inductor_compiles_the_end_to_end_heads(case_files, family):
    """The end-to-end heads (TopK -> gather) compile into AOTInductor packages, with no fallback to
    eager torch (which warns "running the eager torch backend instead"): compile-time autotuning on
    synthetic inputs tripped the gather's bounds assert; ``compile_settings`` turns it off for them.
    The package's detections are Ultralytics' on the 640x640 cases. A cached package (built by
    test_compiled_engines_match_ultralytics) counts: only a package that compiled is cached."""
    import warnings

    import trtdet
    from tests.trtdet_yolo.test_ultralytics_families import MODELS, _records

    _model, onnx = MODELS[family]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = trtdet.load("yolo", onnx=str(onnx), backend="inductor", device="cuda", precision="fp32",
                               letterbox="square")
    fallbacks = [str(w.message) for w in caught if "eager torch backend" in str(w.message)]
    assert not fallbacks, fallbacks
    cases = FAMILIES[family]["cases"]
    names = [n for n, c in cases.items() if c["input_shape"] == [640, 640]]
    with detector:
        assert detector.engine.backend == "inductor", detector.engine
        assert_parity(_records(detector, {n: case_files[n] for n in names}), {n: cases[n] for n in names})


def test_inductor_runs_rect_per_shape_bucket_like_ultralytics(case_files):
    """`yolo predict`'s default (rect) on the GPU through compiled packages: the nine cases Ultralytics
    ran at 448x640 share one package of that shape, compiled on first use (or cached)."""
    cases = FAMILIES["yolo11n_rect"]["cases"]
    names = [n for n, c in cases.items() if c["input_shape"] == [448, 640]]
    assert len(names) >= 5
    records = run_trtdet("yolo11n_rect", {n: case_files[n] for n in names}, "--device", "cuda", "--backend", "inductor",
                         "--precision", "fp32", "--decode", "cpu")
    assert_parity(records, {n: cases[n] for n in names})


def test_a_1080p_stream_runs_on_a_384x640_package_and_later_loads_it_from_the_cache():
    """A 16:9 stream under rect (the default) on the inductor backend: its batches run on a 384x640
    package (no eager fallback), with onnxruntime's CPU rect detections on the same frames; a second
    detector finds the package in the cache and compiles nothing."""
    import time

    import cv2

    import trtdet
    from tests.trtdet_yolo.test_ultralytics_families import parity_problems
    from tests.trtdet_yolo.ultralytics_cases import source_path
    from trtdet.engines.buckets import BucketEngine
    from trtdet.engines.inductor.runtime import InductorEngine

    photo = cv2.imread(str(source_path("astronaut.png")), cv2.IMREAD_COLOR)
    frame = cv2.resize(photo, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    with trtdet.load("yolo", device="cuda", backend="inductor", precision="fp32", batch=2) as detector:
        assert detector.spec.letterbox == "rect" and isinstance(detector.engine, BucketEngine)
        got = detector([frame, frame])
        assert isinstance(detector.engine.active[(384, 640)], InductorEngine)
        assert (640, 640) not in detector.engine.active and not detector.engine.fell_back
    with trtdet.load("yolo", device="cpu", backend="onnxruntime", batch=2) as reference:
        want = reference([frame, frame])
    assert len(want[0]) >= 1
    for g, w in zip(got, want, strict=True):
        as_records = [{"box": [float(v) for v in b], "score": float(s), "class_id": int(c)}
                      for b, s, c in zip(g.xyxy, g.confidence, g.class_id, strict=True)]
        ref = [{"box": [float(v) for v in b], "score": float(s), "class_id": int(c)}
               for b, s, c in zip(w.xyxy, w.confidence, w.class_id, strict=True)]
        assert not parity_problems("1080p", as_records, ref)
    said = []
    with trtdet.load("yolo", device="cuda", backend="inductor", precision="fp32", batch=2) as again:
        again.engine.announce = said.append
        started = time.perf_counter()
        again([frame, frame])
        assert time.perf_counter() - started < 10.0 and said == []  # loaded from the cache, not compiled
