"""``device="cuda:N"`` on real GPUs: cuda:0 named explicitly, and two detectors on two GPUs at once.

The reference is the CPU path (ONNX Runtime): each GPU's detections must match it as the
plain ``cuda`` pipeline does (``assert_same_detections``), and every buffer, stream and
engine output must live on the GPU the detector was given.
"""

from __future__ import annotations

import threading

import pytest

import trtdet
from trtdet.io.images import read_image

from .test_gpu_pipeline import _same, assert_same_detections

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason=f"needs two CUDA GPUs (this machine has {torch.cuda.device_count()})"
)


@pytest.fixture(scope="module")
def images(photos):
    return [read_image(photos[name]) for name in ("grace_hopper", "astronaut", "chelsea", "coffee", "motorcycle", "camera")]


def _engine_output_device(detector: trtdet.Detector, image) -> torch.device:
    with detector._on_stream():
        batch = detector.preprocessor([image])
        outputs = detector.engine(batch.tensor)
    torch.cuda.synchronize()
    assert batch.tensor.device == outputs[next(iter(outputs))].device
    return batch.tensor.device


@pytest.mark.parametrize("backend", ["torch", "inductor"])
@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_cuda_0_named_explicitly_matches_the_cpu_path(model, backend, images):
    pytest.importorskip("numba.cuda")
    # yolo square on both sides: under rect the compiled engines make a package per photo shape
    # (test_gpu_families.py checks rect on them)
    square = {"letterbox": "square"} if model == "yolo" else {}
    cpu = trtdet.load(model, device="cpu", **square)
    with trtdet.load(model, device="cuda:0", backend=backend, batch=4, **square) as gpu:
        assert gpu.device == "cuda:0"
        assert _engine_output_device(gpu, images[0]) == torch.device("cuda", 0)
        for got, want in zip(gpu(images), cpu(images), strict=True):
            assert_same_detections(got, want, cpu.spec.conf_threshold)


@two_gpus
@pytest.mark.parametrize("backend", ["torch", "inductor"])
@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_two_detectors_on_two_gpus_side_by_side(model, backend, images):
    """cuda:0 and cuda:1 in one process, called from two threads at once (and submit()),
    each on its own GPU (its engine's outputs there, GPU 1 allocating memory), each matching the CPU."""
    pytest.importorskip("numba.cuda")
    # yolo square on both sides: under rect the compiled engines make a package per photo shape
    # (test_gpu_families.py checks rect on them)
    square = {"letterbox": "square"} if model == "yolo" else {}
    cpu = trtdet.load(model, device="cpu", **square)
    expected = cpu(images)
    conf = cpu.spec.conf_threshold
    before = torch.cuda.memory_allocated(1)
    first = trtdet.load(model, device="cuda:0", backend=backend, batch=4, **square)
    second = trtdet.load(model, device="cuda:1", backend=backend, batch=4, **square)
    try:
        assert torch.cuda.memory_allocated(1) > before, "nothing was allocated on GPU 1"
        assert _engine_output_device(first, images[0]) == torch.device("cuda", 0)
        assert _engine_output_device(second, images[0]) == torch.device("cuda", 1)
        results: dict[str, list] = {}

        def run(name: str, detector: trtdet.Detector) -> None:
            got = []
            for _ in range(5):
                got = detector.detect(images * 3)
            results[name] = got[: len(images)]

        threads = [threading.Thread(target=run, args=(n, d)) for n, d in (("0", first), ("1", second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        futures = [(name, i, d.submit(images[i])) for i in range(len(images)) for name, d in (("0", first), ("1", second))]
        submitted = [(name, i, f.result(timeout=60)) for name, i, f in futures]
        for name in ("0", "1"):
            for got, want in zip(results[name], expected, strict=True):
                assert_same_detections(got, want, conf)
        for name, i, got in submitted:  # submit() on each GPU gives what detect() gave there
            assert _same(got, results[name][i]), f"cuda:{name} submit() of image {i}"
    finally:
        first.close()
        second.close()


@two_gpus
def test_inductor_packages_key_on_the_gpu_they_run_on(tmp_path):
    """A package compiled on cuda:1 records GPU 1's name and capability and loads back on cuda:0 and cuda:1."""
    from trtdet.engines.inductor.build import device_identity

    name1 = torch.cuda.get_device_name(1)
    major, minor = torch.cuda.get_device_capability(1)
    assert device_identity("cuda:1") == (f"{major}.{minor}", name1)
    with trtdet.load("yolo", device="cuda:1", backend="inductor", precision="fp16", letterbox="square") as detector:
        meta = detector.engine.package_metadata
        assert (meta.gpu_name, meta.compute_capability) == (name1, f"{major}.{minor}")
        assert meta.extra["device"] == "cuda"
        package = detector.engine.path
    for device in ("cuda:0", "cuda:1"):
        with trtdet.load("yolo", engine=package, device=device) as detector:
            assert detector.engine.backend == "inductor"
            assert _engine_output_device(detector, read_image_for_test()) == torch.device(device)


def read_image_for_test():
    import numpy as np

    return np.full((480, 640, 3), 127, np.uint8)
