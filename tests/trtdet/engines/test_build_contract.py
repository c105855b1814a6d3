"""The build half of the engine backend contract: who builds what, refusals in one line, and how
an artifact describes itself (``trtdet build`` prints ``wrote PATH (describe())``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.engine import BuildRequest, ModelFile
from trtdet.engines.inductor.build import PackageBuild
from trtdet.engines.tensorrt.builder import BuildResult
from trtdet.errors import ModelError, UsageError
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model, list_engine_backends


def _metadata(**changes) -> ArtifactMetadata:
    fields = dict(
        model="yolo", names=("person",), input_size=(640, 640), precision="fp16", runtime="rtx",
        runtime_version="1.7.1.116", compute_capability="aot", gpu_name="", source_sha256="ab" * 32,
        max_batch=4, trtdet_version="0.1.0", build_options={},
    )
    return ArtifactMetadata(**{**fields, **changes})


def test_every_registered_backend_answers_build():
    backends = list_engine_backends()
    assert {"onnxruntime", "torch", "tensorrt", "inductor"} <= set(backends)
    assert (backends["tensorrt"].artifact_suffix, backends["inductor"].artifact_suffix) == (".engine", ".pt2")
    for name in ("onnxruntime", "torch"):
        backend = backends[name]
        with pytest.raises(UsageError, match=rf"^backend '{name}' builds nothing ahead of time: it runs .* files as they are$"):
            backend.build(ModelFile(Path("m.onnx"), "onnx"), get_model("yolo").spec, DetectorOptions())


def test_tensorrt_refuses_what_it_cannot_build(yolo_onnx):
    backend, spec = list_engine_backends()["tensorrt"], get_model("yolo").spec
    with pytest.raises(UsageError, match=r"^--weights builds need --backend inductor; for TensorRT export to ONNX first"):
        backend.build(ModelFile(yolo_onnx, "weights"), spec, DetectorOptions(device="cuda"))
    with pytest.raises(UsageError, match=r"^--device cpu: TensorRT engines are built on a GPU"):
        backend.build(ModelFile(yolo_onnx, "onnx"), spec, DetectorOptions(device="cpu"), BuildRequest(runtime="rtx"))


def test_a_missing_source_is_named(tmp_path):
    backend, spec = list_engine_backends()["inductor"], get_model("yolo").spec
    with pytest.raises(ModelError, match=rf"^{tmp_path / 'absent.pth'}: model file not found$"):
        backend.build(ModelFile(tmp_path / "absent.pth", "weights"), spec, DetectorOptions(device="cpu"))


def test_an_engine_describes_how_it_was_made():
    built = BuildResult(Path("y.engine"), _metadata(build_options={"dcn": "decomposed"}), cached=False, seconds=12.34)
    assert built.describe() == (
        "built in 12.3 s; TensorRT-RTX 1.7.1.116, fp16, batch 1..4, compute capability aot, dcn decomposed"
    )
    cached = BuildResult(Path("y.engine"), _metadata(runtime="tensorrt", runtime_version="10.13", compute_capability="9.0",
                                                    precision="fp32", max_batch=8), cached=True, seconds=0.1)
    assert cached.describe() == "from the engine cache; TensorRT 10.13, fp32, batch 1..8, compute capability 9.0"


def test_a_package_describes_how_it_was_made():
    gpu = _metadata(runtime="inductor", runtime_version="2.11.0+cu130", gpu_name="NVIDIA H200", max_batch=32,
                    extra={"device": "cuda"})
    assert PackageBuild(Path("p.pt2"), gpu, cached=True, seconds=0.2).describe() == (
        "from the package cache; AOTInductor, torch 2.11.0+cu130, fp16, batch 1..32, NVIDIA H200"
    )
    cpu = _metadata(runtime="inductor", runtime_version="2.11.0", gpu_name="x86_64", extra={"device": "cpu"})
    assert PackageBuild(Path("p.pt2"), cpu, cached=False, seconds=41.96).describe() == (
        "built in 42.0 s; AOTInductor, torch 2.11.0, fp16, batch 1..4, cpu"
    )
