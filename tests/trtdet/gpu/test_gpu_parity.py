"""YOLO on CUDA against Ultralytics' own predictor: the CPU parity check of
``tests/trtdet_yolo/test_ultralytics_parity.py`` with the GPU letterbox kernel, engines and decode.

Same reference, same rule: every Ultralytics detection has a trtdet one of the same class with
IoU >= 0.95 and a score within 0.01, and no extra trtdet detection. fp32 (fp16 moves scores by
more than 0.01 on its own). Files are decoded by OpenCV (``--decode cpu``) for the strict check;
the nvJPEG route gets its own, looser one. Needs the case photos: scikit-image/matplotlib, or ``TRTDET_KERNEL_ASSETS``
naming a folder with copies of them (see ``ultralytics_cases.SKIMAGE`` / ``MATPLOTLIB``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trtdet_yolo.test_ultralytics_parity import (
    REFERENCE,
    assert_records_match_the_reference,
    parity_problems,
    run_trtdet,
)
from tests.trtdet_yolo.ultralytics_cases import make_cases

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(tmp_path_factory.mktemp("ultralytics-cases"))


@pytest.mark.parametrize("backend", ["torch", "inductor"])
def test_cuda_detections_match_ultralytics(case_files, backend):
    """Files decoded by OpenCV (``--decode cpu``): the GPU letterbox, engine and decode alone."""
    assert_records_match_the_reference(
        run_trtdet(case_files, "--device", "cuda", "--backend", backend, "--precision", "fp32", "--decode", "cpu")
    )


def test_nvjpeg_decoding_moves_only_jpeg_scores_and_only_a_little(case_files):
    """``--decode cuda``: PNGs still go to OpenCV (strict); JPEGs are decoded by nvJPEG, whose IDCT
    and chroma upsampling round differently from libjpeg-turbo (``test_gpu_decode.py``), so their
    detections agree with Ultralytics to IoU >= 0.9 and 0.05 in score instead."""
    from tests.trtdet_yolo import test_ultralytics_parity as parity

    records = run_trtdet(case_files, "--device", "cuda", "--backend", "torch", "--precision", "fp32", "--decode", "cuda")
    problems = []
    for name, record in records.items():
        ref = REFERENCE["cases"][name]
        if case_files[name].suffix != ".jpg":
            problems += parity_problems(name, record["detections"], ref["detections"])
            continue
        loose = [d for d in ref["detections"] if d["score"] >= 0.3]  # near-threshold ones may flip
        for det in loose:
            assert any(o["class_id"] == det["class_id"] and parity.iou(o["box"], det["box"]) >= 0.9
                       and abs(o["score"] - det["score"]) <= 0.05 for o in record["detections"]), (name, det, record)
    assert not problems, "\n".join(problems)
