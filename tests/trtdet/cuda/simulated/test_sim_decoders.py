"""CenterNet and YOLO decode kernels under the simulator vs the CPU decoders (identical results)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet.preprocess.affine import letterbox_transform
from trtdet_centernet.cuda_decode import CudaCenterNetDecoder, logit_threshold
from trtdet_centernet.decode import _sigmoid, decode_centernet
from trtdet_yolo.cuda_decode import CudaYoloDecoder
from trtdet_yolo.decode import decode_yolo

from ..checks import assert_same_detections, centernet_output, yolo_output

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

H, W, C = 6, 5, 3
INPUT = (H * 4, W * 4)


def _transforms(batch: int, size: tuple[int, int]) -> list:
    sources = [(37, 50), (90, 20), (24, 20), (7, 300)]
    return [letterbox_transform(sources[i % len(sources)], size) for i in range(batch)]


@pytest.mark.parametrize(
    ("k", "threshold"),
    [(5, 0.3), (100, 0.1), (7, 0.0), (3, 0.95), (1, 0.5)],
    ids=["k5-radix", "k100-all", "thr0", "few", "k1"],
)
def test_centernet_identical_to_cpu_decode(k, threshold):
    output = centernet_output(np.random.default_rng(k), 3, H, W, C)
    transforms = _transforms(3, INPUT)
    want = decode_centernet(output, transforms, stride=4, input_size=INPUT, num_classes=C, k=k, threshold=threshold)
    got = CudaCenterNetDecoder(C, INPUT, k=k, threshold=threshold)({"output": torch.from_numpy(output)}, transforms)
    assert_same_detections(got, want)


def test_centernet_keeps_every_class_of_a_cell():
    """The one-class-per-cell shortcut would lose these: the same logit peaks in all classes."""
    output = centernet_output(np.random.default_rng(0), 1, H, W, C, background=-9.0, plateaus=False)
    cell = 2 * W + 1
    output[0, cell, 4 : 4 + C] = 2.5  # logits
    output[0, cell, 4 + C :] = 2.5  # their pool: the background around is far lower
    transforms = _transforms(1, INPUT)
    got = CudaCenterNetDecoder(C, INPUT, k=10, threshold=0.5)({"output": torch.from_numpy(output)}, transforms)[0]
    assert got.class_id.tolist() == list(range(C))
    want = decode_centernet(output, transforms, stride=4, input_size=INPUT, num_classes=C, k=10, threshold=0.5)
    assert_same_detections([got], want)


def test_centernet_overflow_falls_back_to_the_cpu(caplog):
    output = centernet_output(np.random.default_rng(5), 2, H, W, C)
    transforms = _transforms(2, INPUT)
    decoder = CudaCenterNetDecoder(C, INPUT, k=4, threshold=0.05, max_candidates=3)
    with caplog.at_level(logging.WARNING):
        got = decoder({"output": torch.from_numpy(output)}, transforms)
    assert "exceed max_candidates=3" in caplog.text
    want = decode_centernet(output, transforms, stride=4, input_size=INPUT, num_classes=C, k=4, threshold=0.05)
    assert_same_detections(got, want)
    # The kernel reset its counters: a batch with few peaks decodes on the GPU again.
    sparse = centernet_output(np.random.default_rng(6), 2, H, W, C, background=-9.0, plateaus=False)
    sparse[:, 7, 4 : 4 + C] = sparse[:, 7, 4 + C :] = 1.0  # one peak per class... in a 3-class cell
    caplog.clear()
    got = decoder({"output": torch.from_numpy(sparse)}, transforms)
    assert "exceed" not in caplog.text
    want = decode_centernet(sparse, transforms, stride=4, input_size=INPUT, num_classes=C, k=4, threshold=0.05)
    assert [len(d) for d in want] == [3, 3]
    assert_same_detections(got, want)


@pytest.mark.parametrize("threshold", [0.3, 0.01, 0.5, 0.999, 0.0, -1.0, 1.0])
@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_logit_threshold_is_the_exact_boundary(threshold):
    x = logit_threshold(threshold)
    if np.isnan(x):
        assert not _sigmoid(np.array([np.inf], np.float32))[0] > threshold
        return
    assert _sigmoid(np.array([x], np.float32))[0] > threshold
    below = np.nextafter(x, np.float32(-np.inf))
    if np.isfinite(x):
        assert not _sigmoid(np.array([below], np.float32))[0] > threshold


@pytest.mark.parametrize("head", ["v8", "v5"])
@pytest.mark.parametrize(
    ("conf", "iou", "max_det"),
    [(0.25, 0.7, 300), (0.05, 0.3, 5), (0.0, 0.5, 300), (0.7, 0.5, 300)],
    ids=["default", "maxdet", "all", "few-in-shared-memory"],
)
def test_yolo_identical_to_cpu_decode(head, conf, iou, max_det):
    nc, anchors = 3, 60
    output = yolo_output(np.random.default_rng(7), 2, anchors, nc, head)
    transforms = _transforms(2, (64, 64))
    want = decode_yolo(output, transforms, head=head, num_classes=nc, conf_threshold=conf, iou_threshold=iou,
                       max_detections=max_det)
    got = CudaYoloDecoder(nc, conf, iou, max_det)({"output0": torch.from_numpy(output)}, transforms)
    assert_same_detections(got, want)
    assert sum(len(g) for g in got) > 0


def test_centernet_peaks_come_from_hm_not_the_engines_pool_hm():
    """An engine's pooled copy rounded one ulp off ``hm`` (AOTInductor fp32 did this) must not
    drop peaks: the kernel pools ``hm`` itself, like upstream and the CPU decoder."""
    output = centernet_output(np.random.default_rng(3), 2, H, W, C)
    exact = decode_centernet(output, _transforms(2, INPUT), stride=4, input_size=INPUT, num_classes=C, k=20, threshold=0.1)
    assert sum(len(d) for d in exact) > 0
    skewed = output.copy()
    skewed[..., 4 + C :] = np.nextafter(skewed[..., 4 + C :], np.float32(np.inf))
    got = CudaCenterNetDecoder(C, INPUT, k=20, threshold=0.1)({"output": torch.from_numpy(skewed)}, _transforms(2, INPUT))
    assert_same_detections(got, exact)


@pytest.mark.parametrize("head", ["v8", "v5"])
def test_yolo_agnostic_nms_identical_to_cpu_decode(head):
    nc, anchors = 3, 60
    output = yolo_output(np.random.default_rng(11), 2, anchors, nc, head)
    transforms = _transforms(2, (64, 64))
    want = decode_yolo(output, transforms, head=head, num_classes=nc, conf_threshold=0.05, iou_threshold=0.3,
                       max_detections=300, agnostic=True)
    aware = decode_yolo(output, transforms, head=head, num_classes=nc, conf_threshold=0.05, iou_threshold=0.3,
                        max_detections=300)
    got = CudaYoloDecoder(nc, 0.05, 0.3, 300, agnostic=True)({"output0": torch.from_numpy(output)}, transforms)
    assert_same_detections(got, want)
    assert sum(len(w) for w in want) < sum(len(a) for a in aware)  # the case suppresses across classes


def test_two_queued_batches_collect_their_own_results():
    """queue(k), queue(k+1), then collect both: each batch keeps its own pinned results."""
    rng = np.random.default_rng(11)
    first, second = centernet_output(rng, 3, H, W, C), centernet_output(rng, 2, H, W, C)
    t1, t2 = _transforms(3, INPUT), _transforms(2, INPUT)[::-1]
    decoder = CudaCenterNetDecoder(C, INPUT, k=6, threshold=0.1)
    q1 = decoder.queue({"output": torch.from_numpy(first)}, t1)
    q2 = decoder.queue({"output": torch.from_numpy(second)}, t2)
    for queued, output, transforms in ((q1, first, t1), (q2, second, t2)):
        want = decode_centernet(output, transforms, stride=4, input_size=INPUT, num_classes=C, k=6, threshold=0.1)
        assert_same_detections(decoder.collect(queued), want)
    nc = 3
    y1, y2 = yolo_output(rng, 2, 60, nc, "v8"), yolo_output(rng, 3, 60, nc, "v8")
    yolo = CudaYoloDecoder(nc, 0.05, 0.5, 300)
    a = yolo.queue({"output0": torch.from_numpy(y1)}, _transforms(2, (64, 64)))
    b = yolo.queue({"output0": torch.from_numpy(y2)}, _transforms(3, (64, 64)))
    for queued, output, batch in ((a, y1, 2), (b, y2, 3)):
        want = decode_yolo(output, _transforms(batch, (64, 64)), head="v8", num_classes=nc, conf_threshold=0.05,
                           iou_threshold=0.5, max_detections=300)
        assert_same_detections(yolo.collect(queued), want)


def test_a_collected_overflow_asks_for_a_rerun_instead_of_reading_a_stale_output():
    output = centernet_output(np.random.default_rng(5), 2, H, W, C)
    decoder = CudaCenterNetDecoder(C, INPUT, k=4, threshold=0.05, max_candidates=3)
    queued = decoder.queue({"output": torch.from_numpy(output)}, _transforms(2, INPUT))
    with pytest.raises(RuntimeError, match="exceed max_candidates=3"):
        decoder.collect(queued)
