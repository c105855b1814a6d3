"""YOLO on CUDA against Ultralytics' own predictor: the CPU parity check of
``tests/trtdet_yolo/test_ultralytics_parity.py`` with the GPU letterbox kernel, engines and decode.

Same reference, same rule: every Ultralytics detection has a trtdet one of the same class with
IoU >= 0.95 and a score within 0.01, and no extra trtdet detection. fp32 (fp16 moves scores by
more than 0.01 on its own). JPEGs go through nvJPEG with ``--decode cuda`` and OpenCV with
``--decode cpu``. Needs the case photos: scikit-image/matplotlib, or ``TRTDET_KERNEL_ASSETS``
naming a folder with copies of them (see ``ultralytics_cases.SKIMAGE`` / ``MATPLOTLIB``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trtdet_yolo.test_ultralytics_parity import REFERENCE, parity_problems, run_trtdet
from tests.trtdet_yolo.ultralytics_cases import make_cases

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(tmp_path_factory.mktemp("ultralytics-cases"))


@pytest.mark.parametrize(("backend", "decode"), [("torch", "cpu"), ("torch", "cuda"), ("inductor", "cuda")])
def test_cuda_detections_match_ultralytics(case_files, backend, decode):
    records = run_trtdet(
        case_files, "--device", "cuda", "--backend", backend, "--precision", "fp32", "--decode", decode
    )
    problems = []
    for name, record in records.items():
        ref = REFERENCE["cases"][name]
        assert record["error"] is None, record
        assert (record["height"], record["width"]) == (ref["height"], ref["width"]), name
        problems += parity_problems(name, record["detections"], ref["detections"])
    assert not problems, "\n".join(problems)
