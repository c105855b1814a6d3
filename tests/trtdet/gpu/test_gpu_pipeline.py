"""The CUDA pipeline end to end (H100): same detections as the CPU path, batching under load.

Skips with the reason when there is no CUDA GPU, numba-cuda or torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import trtdet
from tests.concurrent_submits import submit_from_threads
from trtdet.io.images import read_image

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same_detections(gpu: trtdet.Detections, cpu: trtdet.Detections, conf: float) -> None:
    """Same classes, IoU >= 0.9, scores within 0.02 (detections within 0.02 of the threshold may flip)."""
    for i in range(len(cpu)):
        match = [j for j in range(len(gpu)) if gpu.class_id[j] == cpu.class_id[i] and _iou(gpu.xyxy[j], cpu.xyxy[i]) >= 0.9]
        if not match:
            assert cpu.confidence[i] < conf + 0.02, (cpu[i], gpu)
            continue
        assert abs(gpu.confidence[match[0]] - cpu.confidence[i]) <= 0.02
    for j in range(len(gpu)):
        if gpu.confidence[j] >= conf + 0.02:
            assert any(cpu.class_id[i] == gpu.class_id[j] and _iou(gpu.xyxy[j], cpu.xyxy[i]) >= 0.9 for i in range(len(cpu)))


@pytest.fixture(scope="module")
def images(photos):
    return [read_image(photos[name]) for name in ("grace_hopper", "astronaut", "chelsea", "coffee", "motorcycle", "camera")]


@pytest.mark.parametrize("backend", ["torch", "inductor"])
@pytest.mark.parametrize("model", ["yolo", "centernet"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_pipeline_matches_the_cpu_path(model, precision, backend, images):
    pytest.importorskip("torch", reason="the torch backend runs ONNX through trtdet.onnx_torch")
    pytest.importorskip("numba.cuda")
    # yolo square on both sides: under rect the compiled engines make a package per photo shape
    # (test_gpu_families.py checks rect on them)
    square = {"letterbox": "square"} if model == "yolo" else {}
    cpu = trtdet.load(model, device="cpu", **square)
    gpu = trtdet.load(model, device="cuda", batch=4, precision=precision, backend=backend, **square)
    assert gpu.backend == backend
    expected = cpu(images)
    got = gpu(images)
    conf = cpu.spec.conf_threshold
    tolerance_images = 0
    for g, c in zip(got, expected, strict=True):
        if precision == "fp32":
            assert_same_detections(g, c, conf)
        else:
            try:
                assert_same_detections(g, c, conf)
            except AssertionError:
                tolerance_images += 1
    assert tolerance_images <= 1  # fp16 may move one marginal detection


def _same(got: trtdet.Detections, want: trtdet.Detections) -> bool:
    return (len(got) == len(want) and np.array_equal(got.class_id, want.class_id)
            and np.allclose(got.xyxy, want.xyxy, atol=0.5) and np.allclose(got.confidence, want.confidence, atol=0.01))


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_batches_of_every_size_give_each_image_its_own_result(images, cuda_graphs):
    pytest.importorskip("torch")
    with trtdet.load("yolo", device="cuda", batch=16, cuda_graphs=cuda_graphs) as detector:
        expected = [detector(image) for image in images]
        for size in (1, 2, 3, 5, 16, 7, 1, 12):
            picks = [(size * 7 + n) % len(images) for n in range(size)]
            got = detector.detect([images[i] for i in picks])
            wrong = [i for i, g in zip(picks, got, strict=True) if not _same(g, expected[i])]
            assert not wrong, f"batch of {size}: images {wrong} got another image's detections"


@pytest.mark.parametrize("model", ["yolo", "centernet"])
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_long_lists_overlap_chunks_and_keep_every_result(images, model, cuda_graphs):
    """detect() on many chunks stages chunk k+1 during chunk k; results stay each image's own,
    also for images already on the GPU and for chunks of mixed image sizes."""
    pytest.importorskip("torch")
    with trtdet.load(model, device="cuda", batch=4, cuda_graphs=cuda_graphs) as detector:
        expected = [detector(image) for image in images]
        picks = [(n * 5) % len(images) for n in range(37)]
        inputs = [torch.from_numpy(images[i]).cuda() if n % 3 == 0 else images[i] for n, i in enumerate(picks)]
        for _ in range(2):
            got = detector.detect(inputs)
            wrong = [n for n, (i, g) in enumerate(zip(picks, got, strict=True)) if not _same(g, expected[i])]
            assert len(got) == len(picks) and not wrong, f"inputs {wrong} got another image's detections"
        # A bad image in a later chunk fails the call after the earlier chunk was staged;
        # the detector stays usable.
        with pytest.raises(ValueError, match="expected an HxW, HxWx3 or HxWx4 image"):
            detector.detect(images[:5] + [np.zeros((4, 4, 2), np.uint8)])  # two channels: no image
        assert _same(detector.detect(images[:5])[4], expected[4])


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_submit_from_eight_threads_on_the_gpu(images, cuda_graphs):
    pytest.importorskip("torch")
    with trtdet.load("yolo", device="cuda", batch=16, cuda_graphs=cuda_graphs) as detector:
        expected = [detector(image) for image in images]
        results = submit_from_threads(detector, images, lambda k, n: (k + n) % len(images))
    assert len(results) == 8000
    wrong = sum(not _same(got, expected[i]) for i, got in results)
    assert wrong == 0, f"{wrong} of 8000 futures got another image's detections"
