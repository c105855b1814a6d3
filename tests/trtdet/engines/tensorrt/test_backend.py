"""The TensorRT backend: registration, availability, engine/TensorRT/GPU mismatches, plugin checks.

Execution tests need a TensorRT runtime on a GPU it supports; none exists here (TensorRT-RTX
rejects the H100's compute capability 9.0 and NVIDIA TensorRT is not installable on the CPU
machine), so they skip with the backend's own reason.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest

from trtdet.contracts.artifact import RequiredPlugin, read_artifact, write_artifact
from trtdet.contracts.engine import ModelFile
from trtdet.engines.artifact_cache import ArtifactCache
from trtdet.engines.tensorrt.backend import (
    TensorRTBackend,
    check_plugins,
    ensure_runnable,
    gpu_compute_capability,
    incompatibility,
)
from trtdet.engines.tensorrt.builder import BuildConfig, build_engine
from trtdet.engines.tensorrt.flavour import load_flavour
from trtdet.errors import ModelError
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model, list_engine_backends

pytestmark = pytest.mark.usefixtures("tensorrt_plugins")


def test_registered_through_the_hook_above_onnxruntime():
    backends = list_engine_backends()
    tensorrt = backends["tensorrt"]
    assert tensorrt.file_kinds == ("engine", "onnx")
    assert tensorrt.priority > backends["onnxruntime"].priority


def test_unavailable_reasons():
    backend = TensorRTBackend()
    assert "CUDA GPUs only" in backend.unavailable_reason("cpu")
    reason = backend.unavailable_reason("cuda")
    if gpu_compute_capability() is None:
        assert reason is not None and ("no TensorRT is installed" in reason or "no CUDA GPU" in reason)


def test_rtx_engine_compatibility_rules(rtx, make_metadata):
    flavour = load_flavour("rtx")
    meta = make_metadata(runtime_version=flavour.version)
    assert incompatibility(meta, flavour, (8, 6)) is None
    assert incompatibility(meta, flavour, (12, 0)) is None
    assert "does not support compute capability 9.0" in incompatibility(meta, flavour, (9, 0))
    older = incompatibility(replace(meta, runtime_version="1.0.0"), flavour, (8, 6))
    assert older == f"it was built with TensorRT-RTX 1.0.0, this is TensorRT-RTX {flavour.version}"
    other = incompatibility(replace(meta, runtime="tensorrt", runtime_version="10.13"), flavour, (8, 6))
    assert other == f"it was built with TensorRT 10.13, this is TensorRT-RTX {flavour.version}"


def test_engine_for_another_gpu_is_incompatible(rtx, make_metadata):
    """Full TensorRT plans are per compute capability (the module only supplies a version string here)."""
    from trtdet.engines.tensorrt.flavour import Flavour

    flavour = Flavour("tensorrt", rtx)
    meta = make_metadata(runtime="tensorrt", runtime_version=flavour.version, compute_capability="8.6")
    assert incompatibility(meta, flavour, (8, 6)) is None
    assert (
        incompatibility(meta, flavour, (9, 0)) == "it was built for compute capability 8.6, this GPU is 9.0"
    )


def test_unsupported_gpu_reason_names_the_capability(rtx, monkeypatch):
    import trtdet.engines.tensorrt.backend as backend_module

    monkeypatch.setattr(backend_module, "available_flavours", lambda: [load_flavour("rtx")])
    monkeypatch.setattr(backend_module, "gpu_compute_capability", lambda: (9, 0))
    reason = TensorRTBackend().unavailable_reason("cuda")
    assert "does not support this GPU's compute capability 9.0" in reason and "trtdet[tensorrt]" in reason


@pytest.fixture(scope="module")
def yolo_engine(rtx, tensorrt_plugins, yolo_onnx, tmp_path_factory):
    cache = ArtifactCache(tmp_path_factory.mktemp("engines"))
    return build_engine(yolo_onnx, get_model("yolo").spec, BuildConfig(trt="rtx"), cache=cache), cache


@pytest.mark.slow
def test_engine_for_another_version_is_rebuilt_from_the_cached_onnx(yolo_engine, tmp_path):
    result, cache = yolo_engine
    flavour = load_flavour("rtx")
    metadata, plan = read_artifact(result.path)
    stale = write_artifact(tmp_path / "stale.engine", replace(metadata, runtime_version="1.0.0"), plan)
    result.path.unlink()  # force a real rebuild rather than a cache hit
    with pytest.warns(
        UserWarning, match=r"stale\.engine: it was built with TensorRT-RTX 1\.0\.0.*rebuilding"
    ):
        path, rebuilt, new_plan = ensure_runnable(stale, get_model("yolo").spec, flavour, (8, 6), cache)
    assert rebuilt.runtime_version == flavour.version and rebuilt.source_sha256 == metadata.source_sha256
    assert path.is_file() and read_artifact(path)[1] == new_plan
    # the engine the file held: the yolo spec's rect letterbox keeps H x W dynamic, up to 640x640
    assert metadata.dynamic_input_size and rebuilt.dynamic_input_size and rebuilt.input_size == (640, 640)
    assert [t.shape for t in rebuilt.inputs] == [(-1, 3, -1, -1)]


@pytest.mark.slow
def test_a_stale_square_engine_is_rebuilt_square_whatever_the_callers_letterbox(rtx, tensorrt_plugins, yolo_onnx, tmp_path):
    cache = ArtifactCache(tmp_path / "engines")
    square = dataclasses.replace(get_model("yolo").spec, letterbox="square")
    result = build_engine(yolo_onnx, square, BuildConfig(trt="rtx"), cache=cache)
    metadata, plan = read_artifact(result.path)
    stale = write_artifact(tmp_path / "stale.engine", replace(metadata, runtime_version="1.0.0"), plan)
    result.path.unlink()
    with pytest.warns(UserWarning, match="rebuilding"):
        _, rebuilt, _ = ensure_runnable(stale, get_model("yolo").spec, load_flavour("rtx"), (8, 6), cache)
    assert not rebuilt.dynamic_input_size and [t.shape for t in rebuilt.inputs] == [(-1, 3, 640, 640)]


def test_stale_engine_without_cached_onnx_says_how_to_rebuild(yolo_engine, tmp_path):
    result, _ = yolo_engine
    metadata, plan = read_artifact(result.path) if result.path.is_file() else (result.metadata, b"plan")
    stale = write_artifact(tmp_path / "stale.engine", replace(metadata, runtime_version="1.0.0", extra={}), plan)
    with pytest.raises(
        ModelError,
        match=r"stale\.engine: it was built with TensorRT-RTX 1\.0\.0.*trtdet build "
        r"MODEL\.onnx --model yolo",
    ):
        ensure_runnable(
            stale, get_model("yolo").spec, load_flavour("rtx"), (8, 6), ArtifactCache(tmp_path / "empty")
        )


def test_engine_built_for_unsupported_gpu_is_reported(yolo_engine, tmp_path):
    result, _ = yolo_engine
    stale = write_artifact(tmp_path / "e.engine", replace(result.metadata, extra={}), b"plan")
    with pytest.raises(
        ModelError, match=r"e\.engine: TensorRT-RTX .* does not support compute capability 9\.0"
    ):
        ensure_runnable(
            stale, get_model("yolo").spec, load_flavour("rtx"), (9, 0), ArtifactCache(tmp_path / "empty")
        )


def test_missing_plugin_creator_names_the_package(rtx, make_metadata, tmp_path):
    flavour = load_flavour("rtx")
    meta = make_metadata(plugins=(RequiredPlugin("SomeoneElsesDCN", "3", "vendor", "vendor-trt-plugins"),))
    with pytest.raises(
        ModelError,
        match=r"m\.engine: needs the TensorRT plugin 'SomeoneElsesDCN'.*"
        r"'vendor-trt-plugins'.*pip install vendor-trt-plugins",
    ):
        check_plugins(tmp_path / "m.engine", meta, flavour)
    check_plugins(tmp_path / "m.engine", replace(meta, plugins=()), flavour)


def _runnable_backend() -> TensorRTBackend:
    backend = TensorRTBackend()
    reason = backend.unavailable_reason("cuda")
    if reason:
        pytest.skip(f"no TensorRT runtime can execute engines here: {reason}")
    return backend


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_yolo_engine_matches_onnxruntime(yolo_onnx, cuda_graph, tmp_path):
    import onnxruntime as ort
    import torch

    backend = _runnable_backend()
    spec = get_model("yolo").spec
    engine = backend.load(ModelFile(yolo_onnx, "onnx"), spec, DetectorOptions(device="cuda", cuda_graphs=cuda_graph))
    engine.activate()
    batch = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    expected = ort.InferenceSession(str(yolo_onnx), providers=["CPUExecutionProvider"]).run(
        None, {"images": batch}
    )[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = engine(torch.from_numpy(batch).cuda())["output0"]
        torch.cuda.synchronize()
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(engine(batch)["output0"].cpu().numpy(), expected, rtol=1e-2, atol=1e-2)  # numpy in: CUDA out
    engine.deactivate()


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("dcn", ["builtin", "plugin", "decomposed"])
def test_centernet_engine_matches_onnxruntime_with_each_dcn_lowering(centernet_onnx, dcn):
    """NVIDIA TensorRT on a GPU: every DCN lowering computes the standard export's output."""
    import onnxruntime as ort

    backend = _runnable_backend()
    if load_flavour().is_rtx and dcn != "decomposed":
        pytest.skip(f"--build-option dcn={dcn} needs NVIDIA TensorRT; only TensorRT-RTX runs here")
    options = DetectorOptions(device="cuda", batch=2, build_options={"dcn": dcn})
    engine = backend.load(ModelFile(centernet_onnx, "onnx"), get_model("centernet").spec, options)
    engine.activate()
    assert json.loads(engine.metadata["build_options"])["dcn"] == dcn
    batch = np.random.default_rng(0).standard_normal((2, 3, 128, 128)).astype(np.float32)
    session = ort.InferenceSession(str(centernet_onnx), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"images": batch})[0]
    np.testing.assert_allclose(engine(batch)["output"].cpu().numpy(), expected, rtol=1e-3, atol=1e-3)
    engine.deactivate()


def test_loading_an_onnx_builds_through_the_context(monkeypatch, yolo_onnx):
    """``load`` of an ONNX file builds through ``build(source, spec, context, request)``: the context it
    was given (its Device and stream kept), the batch raised to at least ``min_build_batch``, the
    options' build options inside; the GPU is faked (the build itself is not run here)."""
    import trtdet.engines.tensorrt.backend as backend_module
    from trtdet.context import RunContext
    from trtdet.devices import Device

    class Stop(Exception):
        pass

    received = []

    def build(self, source, spec, context, request):
        received.append((source, context, request))
        raise Stop

    monkeypatch.setattr(backend_module, "gpu_compute_capability", lambda: (9, 0))
    monkeypatch.setattr(backend_module, "choose_runtime_flavour", lambda metadata, capability: _flavour_named("tensorrt"))
    monkeypatch.setattr(backend_module.TensorRTBackend, "build", build)
    options = DetectorOptions(device="cuda:1", precision="fp16", batch=2, build_options={"dcn": "decomposed"})
    stream = object()
    given = RunContext(Device("cuda", 1), "fp16", 2, stream=stream, options=options)
    with pytest.raises(Stop):
        backend_module.TensorRTBackend().load(ModelFile(yolo_onnx, "onnx"), get_model("yolo").spec, options, given)
    (source, context, request), = received
    assert source == ModelFile(yolo_onnx, "onnx") and request.runtime == "tensorrt"
    assert (context.device, context.precision, context.batch, context.stream) == (Device("cuda", 1), "fp16", 8, stream)
    assert context.build_options == {"dcn": "decomposed"} and context.options.batch == 8


def _flavour_named(name: str):
    """A stand-in for a TensorRT flavour: only its ``name`` is read before the build."""
    from types import SimpleNamespace

    return SimpleNamespace(name=name)
