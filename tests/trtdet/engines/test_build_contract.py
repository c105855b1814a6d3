"""The build half of the engine backend contract: who builds what, refusals in one line, how
an artifact describes itself (``trtdet build`` prints ``wrote PATH (describe())``), and what
``build`` receives: the resolved ``RunContext`` (or, for a backend written before it, the options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtdet.context import RunContext
from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.engine import BackendDefaults, BuildRequest, ModelFile, build_takes_context, build_with
from trtdet.devices import Device
from trtdet.engines.inductor.build import PackageBuild
from trtdet.engines.tensorrt.builder import BuildResult
from trtdet.errors import ModelError, UsageError
from trtdet.hookspecs import hookimpl
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model, list_engine_backends, register_plugin, unregister_plugin


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
            backend.build(ModelFile(Path("m.onnx"), "onnx"), get_model("yolo").spec, RunContext.of("cpu"))


def test_tensorrt_refuses_what_it_cannot_build(yolo_onnx):
    backend, spec = list_engine_backends()["tensorrt"], get_model("yolo").spec
    with pytest.raises(UsageError, match=r"^--weights builds need --backend inductor; for TensorRT export to ONNX first"):
        backend.build(ModelFile(yolo_onnx, "weights"), spec, RunContext.of("cuda"))
    with pytest.raises(UsageError, match=r"^--device cpu: TensorRT engines are built on a GPU"):
        backend.build(ModelFile(yolo_onnx, "onnx"), spec, RunContext.of("cpu"), BuildRequest(runtime="rtx"))


def test_a_missing_source_is_named(tmp_path):
    backend, spec = list_engine_backends()["inductor"], get_model("yolo").spec
    with pytest.raises(ModelError, match=rf"^{tmp_path / 'absent.pth'}: model file not found$"):
        backend.build(ModelFile(tmp_path / "absent.pth", "weights"), spec, RunContext.of("cpu"))


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


class _Built:
    """What the recording backends return: an artifact at the requested output."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return "recorded"


class _ContextBuild:
    """A plugin backend written for the contract: ``build(source, spec, context, request)``."""

    name, priority, file_kinds, artifact_suffix = "context-build-test", -10, ("onnx",), ".bin"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def load(self, model_file, spec, options, context):
        raise NotImplementedError

    def build(self, source, spec, context, request=None):
        self.calls.append((source, spec, context, request))
        return _Built(request.output)


class _OptionsBuild(_ContextBuild):
    """A plugin backend written before the context reached builds: ``build(source, spec, options, request)``."""

    name = "options-build-test"

    def build(self, source, spec, options, request=None):
        self.calls.append((source, spec, options, request))
        return _Built(request.output)


class _OptionsBuildWithDefaults(BackendDefaults):
    """The same, subclassing ``BackendDefaults`` (so the registry does not wrap it)."""

    name, priority, file_kinds, artifact_suffix = "options-build-defaults-test", -10, ("onnx",), ".bin"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def build(self, source, spec, options: DetectorOptions, request=None):
        self.calls.append((source, spec, options, request))
        return _Built(request.output)


def _cli_build(monkeypatch, tmp_path, backend) -> tuple:
    """``trtdet build --backend NAME`` of a plugin's ``backend`` (as the registry completes it); what
    its ``build`` received third."""
    from click.testing import CliRunner

    from trtdet.cli.main import cli

    class Plugin:
        @hookimpl
        def trtdet_engine_backends(self, register):
            register(backend)

    register_plugin(Plugin(), "build-context-test-plugin")
    try:
        monkeypatch.setattr("trtdet.model_file.check_onnx_fits", lambda spec, path: None)
        result = CliRunner().invoke(cli, [
            "build", str(tmp_path / "m.onnx"), "-m", "yolo", "--backend", backend.name, "--device", "CUDA:1",
            "--precision", "fp16", "--batch", "4", "--input-size", "384", "640", "--build-option", "dcn=decomposed",
            "-o", str(tmp_path / "m.bin"), "-q",
        ])
    finally:
        unregister_plugin("build-context-test-plugin")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {tmp_path / 'm.bin'} (recorded)\n"
    (source, spec, third, request), = backend.calls
    assert source == ModelFile(tmp_path / "m.onnx", "onnx") and spec.input_size == (384, 640)
    assert request.output == tmp_path / "m.bin" and request.report is None
    return third


def test_a_backend_builds_from_the_resolved_context(monkeypatch, tmp_path):
    context = _cli_build(monkeypatch, tmp_path, _ContextBuild())
    assert isinstance(context, RunContext)
    assert (context.device, context.precision, context.batch) == (Device("cuda", 1), "fp16", 4)  # parsed: GPU 1
    assert context.build_options == {"dcn": "decomposed"} and context.stream is None
    assert context.options.device == "cuda:1" and context.options.input_size is None


@pytest.mark.parametrize("backend", [_OptionsBuild, _OptionsBuildWithDefaults])
def test_a_backend_with_the_old_build_signature_still_builds(monkeypatch, tmp_path, backend):
    options = _cli_build(monkeypatch, tmp_path, backend())
    assert isinstance(options, DetectorOptions)
    assert (options.device, options.precision, options.batch) == ("cuda:1", "fp16", 4)
    assert options.build_options == {"dcn": "decomposed"}


def test_which_build_signature_takes_the_context():
    def new(source, spec, context, request=None): ...
    def old(source, spec, options, request=None): ...
    def annotated(source, spec, opts: DetectorOptions, request=None): ...
    def loose(*args, **kwargs): ...

    assert build_takes_context(new) and build_takes_context(loose) and build_takes_context(_ContextBuild().build)
    assert not build_takes_context(old) and not build_takes_context(annotated)
    assert not build_takes_context(_OptionsBuild().build) and not build_takes_context(_OptionsBuildWithDefaults().build)


def test_build_with_hands_an_old_backend_the_contexts_options():
    backend, context = _OptionsBuild(), RunContext.of("cuda:0", "fp16", 2)
    artifact = build_with(backend, ModelFile(Path("m.onnx"), "onnx"), get_model("yolo").spec, context,
                          BuildRequest(output=Path("m.bin")))
    options = backend.calls[-1][2]
    assert artifact.path == Path("m.bin") and options is context.options
    assert (options.device, options.precision, options.batch) == ("cuda:0", "fp16", 2)


def test_build_names_an_unknown_backend_in_one_line(tmp_path):
    from click.testing import CliRunner

    from trtdet.cli.main import cli

    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.onnx"), "-m", "yolo", "--backend", "tensorrtt"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: unknown or uninstalled backend 'tensorrtt' (installed: {', '.join(sorted(list_engine_backends()))})"
    ]
