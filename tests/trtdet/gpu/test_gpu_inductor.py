"""Compiled engines on the GPU (H200): AOTInductor packages against the eager torch path.

Same classes, IoU >= 0.99 and scores within 0.01 in fp16 (IoU >= 0.999, scores within 1e-3
in fp32), on both default models and on random-weight CenterNet checkpoints of depth 18 and
50; CUDA graphs over the package; the package cache. Skips without a CUDA GPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import trtdet
from trtdet.io.images import read_image

from .checkpoints import checkpoint_path

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TOLERANCE = {"fp16": (0.99, 0.01), "fp32": (0.999, 1e-3)}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_equal_detections(got: trtdet.Detections, want: trtdet.Detections, precision: str, conf: float) -> None:
    """Every detection has its twin (same class, IoU, score) unless it sits at the threshold."""
    min_iou, score_tol = TOLERANCE[precision]
    for source, other in ((want, got), (got, want)):
        for i in range(len(source)):
            twins = [j for j in range(len(other)) if other.class_id[j] == source.class_id[i]
                     and _iou(other.xyxy[j], source.xyxy[i]) >= min_iou
                     and abs(other.confidence[j] - source.confidence[i]) <= score_tol]
            assert twins or source.confidence[i] < conf + score_tol, (source[i], other)


@pytest.fixture(scope="module")
def images(photos):
    return [read_image(photos[name]) for name in ("grace_hopper", "astronaut", "chelsea", "coffee", "motorcycle", "camera")]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Path:
    named = os.environ.get("TRTDET_TEST_CHECKPOINTS")
    return Path(named) if named else tmp_path_factory.mktemp("checkpoints")


#: YOLO runs square here: these tests compare one package per model with eager torch (under its
#: default, rect, every photo shape would be a package of its own: test_gpu_families.py covers that).
SQUARE = {"yolo": {"letterbox": "square"}}


def _pair(model: str, precision: str, **source):
    compiled = trtdet.load(model, device="cuda", backend="inductor", batch=8, precision=precision, **SQUARE.get(model, {}), **source)
    eager = trtdet.load(model, device="cuda", backend="torch", batch=8, precision=precision, **SQUARE.get(model, {}), **source)
    return compiled, eager


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_compiled_default_models_detect_what_the_eager_path_detects(model, precision, images):
    pytest.importorskip("numba.cuda")
    compiled, eager = _pair(model, precision)
    assert compiled.backend == "inductor" and eager.backend == "torch"
    # The default CenterNet was trained on shape scenes: its own sample scene has confident
    # detections, the photos only marginal ones (which fp32 may not have at all).
    scene = [read_image(compiled.spec.sample_image())] if compiled.spec.sample_image else []
    got, want = compiled(images + scene), eager(images + scene)
    assert sum(len(w) for w in want) > 0
    for g, w in zip(got, want, strict=True):
        assert_equal_detections(g, w, precision, compiled.spec.conf_threshold)
    compiled.close()
    eager.close()


def _inside_top_k(want: trtdet.Detections, conf: float, keep: int) -> float:
    """A threshold safely inside the decoder's top-K: a random-weight network scores many
    cells alike, and which of the near-equal K-th ones survive is a coin toss in fp16."""
    if len(want) < keep:
        return conf
    return max(conf, float(np.sort(want.confidence)[::-1][keep - 1]))


@pytest.mark.parametrize("depth", [18, 50])
def test_compiled_centernet_checkpoints_detect_what_the_eager_path_detects(depth, images, checkpoints):
    pytest.importorskip("numba.cuda")
    path = checkpoint_path(checkpoints, depth)
    compiled, eager = _pair("centernet", "fp16", weights=path, conf=0.1)
    got, want = compiled(images), eager(images)
    assert sum(len(w) for w in want) > 0
    for g, w in zip(got, want, strict=True):
        assert_equal_detections(g, w, "fp16", _inside_top_k(w, 0.1, keep=60))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("model", ["centernet", "yolo"])
def test_compiled_network_outputs_equal_the_eager_networks(model, precision):
    compiled, eager = _pair(model, precision)
    height, width = compiled.spec.input_size
    torch.manual_seed(0)
    batch = torch.rand(3, 3, height, width, device="cuda")
    a = next(iter(compiled.engine(batch).values())).float()
    b = next(iter(eager.engine(batch).values())).float()
    scale = float(b.abs().max())
    error = float((a - b).abs().max())
    assert error <= (2e-2 if precision == "fp16" else 1e-4) * scale, f"max |compiled - eager| = {error:.3g} of {scale:.3g}"


@pytest.mark.parametrize("model", ["yolo", "centernet"])
def test_cuda_graphs_over_the_package_give_the_packages_results(images, model):
    """CenterNet included: its DCN must run on the capture stream (torchvision's im2col did not)."""
    pytest.importorskip("numba.cuda")
    plain = trtdet.load(model, device="cuda", backend="inductor", batch=8, precision="fp16", cuda_graphs=False, **SQUARE.get(model, {}))
    graphs = trtdet.load(model, device="cuda", backend="inductor", batch=8, precision="fp16", cuda_graphs=True, **SQUARE.get(model, {}))
    scenes = images + ([read_image(plain.spec.sample_image())] if plain.spec.sample_image else [])
    for size in (1, 3, 6, 2, 5):
        batch = [scenes[(size + n) % len(scenes)] for n in range(size)]
        for g, w in zip(graphs.detect(batch), plain.detect(batch), strict=True):
            assert_equal_detections(g, w, "fp16", plain.spec.conf_threshold)
    assert graphs.engine._call.disabled_reason is None  # every batch ran in a captured graph
    size = tuple(graphs.spec.input_size)
    assert set(graphs.engine._call.graphs) <= {(n, 3, *size) for n in (1, 2, 4, 8)}


def test_a_cached_package_loads_in_under_a_second(images):
    trtdet.load("yolo", device="cuda", backend="inductor", batch=8, precision="fp16", letterbox="square").close()  # built or cached
    started = time.perf_counter()
    detector = trtdet.load("yolo", device="cuda", backend="inductor", batch=8, precision="fp16", letterbox="square")
    seconds = time.perf_counter() - started
    detector(images[0])
    assert seconds < 1.0, f"loading the cached package took {seconds:.2f} s"


def test_a_written_package_runs_with_engine_alone_and_refuses_another_model(images, tmp_path):
    from click.testing import CliRunner

    from trtdet.cli.main import cli
    from trtdet.errors import ModelError
    from trtdet_yolo.plugin import default_model_path

    target = tmp_path / "yolo.pt2"
    built = CliRunner().invoke(cli, ["build", "--backend", "inductor", str(default_model_path()), "--model", "yolo",
                                     "--precision", "fp16", "--batch", "32", "-o", str(target), "--quiet"])
    assert built.exit_code == 0 and target.is_file(), built.output
    detector = trtdet.load("yolo", engine=target, device="cuda")
    assert detector.backend == "inductor" and len(detector(images[0])) > 0
    with pytest.raises(ModelError, match="is a 'yolo' model, not 'centernet'"):
        trtdet.load("centernet", engine=target, device="cuda")
