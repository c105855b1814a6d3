"""The fixed-set decode kernel (end-to-end YOLO, RT-DETR) under the simulator vs the numpy decoders.

The numpy decoders (``trtdet_yolo.fixed_set``) are themselves checked against Ultralytics'
recorded output in ``tests/trtdet_yolo/test_ultralytics_families.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet.preprocess.letterbox import ultralytics_letterbox
from trtdet_yolo.cuda_decode import CudaYoloDecoder
from trtdet_yolo.cuda_fixed_set import CudaFixedSetDecoder
from trtdet_yolo.fixed_set import decode_end2end, decode_rtdetr
from trtdet_yolo.rtdetr import CudaRtdetrDecoder

from ..checks import assert_same_detections

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

SOURCES = [(37, 50), (90, 20), (24, 20)]


def e2e_output(rng: np.random.Generator, batch: int, rows: int, classes: int, size: tuple[int, int]) -> np.ndarray:
    """Rows as an end-to-end head gives them: boxes in input pixels (some outside), scores best first."""
    out = np.empty((batch, rows, 6), np.float32)
    xy = rng.uniform(-10, max(size) + 10, (batch, rows, 2))
    wh = rng.uniform(1, 30, (batch, rows, 2))
    out[..., :2], out[..., 2:4] = xy, xy + wh
    out[..., 4] = -np.sort(-rng.uniform(0, 1, (batch, rows)), axis=1)
    out[..., 5] = rng.integers(0, classes, (batch, rows))
    out[:, 3, 4] = out[:, 4, 4]  # a tie
    return out


def rtdetr_output(rng: np.random.Generator, batch: int, rows: int, classes: int, class_scores: bool) -> np.ndarray:
    boxes = np.concatenate([rng.uniform(-0.1, 1.1, (batch, rows, 2)), rng.uniform(0.01, 0.6, (batch, rows, 2))], -1)
    if class_scores:
        tail = rng.uniform(0, 1, (batch, rows, classes))
        tail[:, 2, 1] = tail[:, 2, 0] = 0.99  # equal maxima: the first class wins, as argmax
    else:
        tail = np.stack([-np.sort(-rng.uniform(0, 1, (batch, rows)), 1), rng.integers(0, classes, (batch, rows))], -1)
    return np.concatenate([boxes, tail], -1).astype(np.float32)


def transforms_for(size: tuple[int, int], **kw) -> list:
    return [ultralytics_letterbox(src, size, **kw) for src in SOURCES]


@pytest.mark.parametrize(("conf", "max_det"), [(0.25, 300), (0.5, 7), (0.0, 300), (0.999, 300), (0.1, 1)])
def test_end2end_identical_to_cpu_decode(conf, max_det):
    size = (32, 48)
    output = e2e_output(np.random.default_rng(int(conf * 100) + max_det), 3, 40, 5, size)
    transforms = transforms_for((48, 48), auto=True, stride=16)  # rect: 48x? inputs
    want = decode_end2end(output, transforms, conf_threshold=conf, max_detections=max_det)
    decoder = CudaFixedSetDecoder(rtdetr=False, conf_threshold=conf, max_detections=max_det)
    got = decoder.collect(decoder.queue(torch.from_numpy(output), transforms))
    assert_same_detections(got, want)
    assert all(len(d) <= max_det for d in got)


def test_the_yolo_decoder_routes_end2end_heads_to_the_fixed_set_kernel():
    output = e2e_output(np.random.default_rng(3), 2, 30, 5, (32, 32))
    transforms = [ultralytics_letterbox(src, (32, 32)) for src in SOURCES[:2]]
    decoder = CudaYoloDecoder(5, 0.3, 0.7, 300)
    decoder.validate({"output0": (None, 30, 6)}, "test")
    assert decoder.head == "e2e"
    got = decoder({"output0": torch.from_numpy(output)}, transforms)
    assert_same_detections(got, decode_end2end(output, transforms, conf_threshold=0.3, max_detections=300))
    half = decoder({"output0": torch.from_numpy(output).half()}, transforms)
    assert_same_detections(half, decode_end2end(output.astype(np.float16), transforms, conf_threshold=0.3,
                                                max_detections=300))


@pytest.mark.parametrize("class_scores", [False, True], ids=["8.4-topk", "per-class-scores"])
@pytest.mark.parametrize(("conf", "max_det"), [(0.25, 300), (0.6, 3), (0.0, 300)])
def test_rtdetr_identical_to_cpu_decode(class_scores, conf, max_det):
    output = rtdetr_output(np.random.default_rng(max_det), 3, 50, 4, class_scores)
    transforms = transforms_for((40, 40), scale_fill=True)
    want = decode_rtdetr(output, transforms, conf_threshold=conf, max_detections=max_det, class_scores=class_scores)
    decoder = CudaRtdetrDecoder(4, conf, max_det)
    decoder.validate({"output0": output.shape}, "test")
    assert decoder.class_scores == class_scores
    got = decoder({"output0": torch.from_numpy(output)}, transforms)
    assert_same_detections(got, want)
    assert any(d.xyxy.min() < 0 for d in got) or conf > 0.5  # not clipped, as Ultralytics
