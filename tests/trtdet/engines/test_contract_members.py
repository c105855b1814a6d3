"""The optional members of the stage contracts are declared, with defaults, not found with ``getattr``:
``EngineBackend`` (``BackendDefaults``, completed by the registry), ``RunsOnProviders`` engines,
``LetterboxPreprocessor`` preprocessors; and backends receive the ``RunContext``."""

from __future__ import annotations

import numpy as np
import pytest

import trtdet
from trtdet.context import RunContext
from trtdet.contracts.engine import (
    BackendDefaults,
    EngineBackend,
    ModelFile,
    RunsOnProviders,
    complete_backend,
)
from trtdet.devices import Device
from trtdet.engines.onnxruntime_backend import OnnxRuntimeBackend
from trtdet.engines.torch_backend import TorchBackend
from trtdet.hookspecs import hookimpl
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model, list_engine_backends, register_plugin, unregister_plugin
from trtdet.preprocess.base import LetterboxPreprocessor, PreprocessedBatch, letterbox_of
from trtdet.preprocess.cpu import WarpAffinePreprocessor


def test_the_optional_backend_members_are_declared_with_defaults():
    for member in ("device_kinds", "auto_priority", "unavailable_reason", "artifact_suffix"):
        assert member in EngineBackend.__dict__ or member in EngineBackend.__annotations__, member

    class Minimal(BackendDefaults):
        name, priority, file_kinds = "minimal", 7, ("onnx",)

    backend = Minimal()
    assert backend.device_kinds == ("cpu", "cuda")
    assert backend.auto_priority("cpu") == backend.auto_priority("cuda") == 7
    assert backend.unavailable_reason("cuda") is None and backend.artifact_suffix == ""


def test_every_registered_backend_has_every_member():
    for name, backend in list_engine_backends().items():
        assert isinstance(backend.device_kinds, tuple) and set(backend.device_kinds) <= {"cpu", "cuda"}, name
        assert isinstance(backend.auto_priority("cpu"), int), name
    backends = list_engine_backends()
    assert backends["tensorrt"].device_kinds == ("cuda",)
    assert backends["inductor"].auto_priority("cpu") == 0 < backends["inductor"].auto_priority("cuda")
    assert backends["onnxruntime"].auto_priority("cpu") == backends["onnxruntime"].priority


class _OldStyle:
    """A third-party backend written before the defaults and the context: no optional members, a
    three-argument ``load``."""

    name = "old-style-test"
    priority = -5
    file_kinds = ("onnx",)

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def load(self, model_file, spec, options):
        self.calls.append((model_file, spec, options))
        return OnnxRuntimeBackend().load(model_file, spec, options)

    def build(self, source, spec, options, request=None):
        raise NotImplementedError


class _NewStyle(_OldStyle):
    name = "new-style-test"

    def load(self, model_file, spec, options, context):
        self.calls.append((model_file, spec, options, context))
        return OnnxRuntimeBackend().load(model_file, spec, options, context)


def test_the_registry_completes_a_backend_without_them_and_keeps_its_load(yolo_onnx):
    old, new = _OldStyle(), _NewStyle()

    class Plugin:
        @hookimpl
        def trtdet_engine_backends(self, register):
            register(old)
            register(new)

    register_plugin(Plugin(), "old-style-test-plugin")
    try:
        completed = list_engine_backends()["old-style-test"]
        assert completed.device_kinds == ("cpu", "cuda") and completed.auto_priority("cuda") == -5
        assert completed.unavailable_reason("cpu") is None and completed.calls is old.calls  # its own members stay its own
        detector = trtdet.load("yolo", backend="old-style-test", onnx=yolo_onnx)
        assert len(old.calls[-1]) == 3 and detector.backend == "onnxruntime"
        detector = trtdet.load("yolo", backend="new-style-test", onnx=yolo_onnx, batch=2)
        context = new.calls[-1][3]
        assert isinstance(context, RunContext) and context.device == Device("cpu") and context.batch == 2
    finally:
        unregister_plugin("old-style-test-plugin")
    assert complete_backend(OnnxRuntimeBackend()).__class__ is OnnxRuntimeBackend  # built-ins are complete already


def test_onnxruntime_runs_on_the_contexts_device(yolo_onnx):
    spec = get_model("yolo").spec
    engine = OnnxRuntimeBackend().load(ModelFile(yolo_onnx, "onnx"), spec, DetectorOptions(device="cpu"),
                                       RunContext(Device("cpu")))
    with engine:
        assert isinstance(engine, RunsOnProviders) and engine.providers[0] == "CPUExecutionProvider"
    assert not isinstance(TorchBackend().load(ModelFile(yolo_onnx, "onnx"), spec, DetectorOptions()), RunsOnProviders)


def test_the_letterbox_of_a_preprocessor_is_a_declared_member():
    detector = trtdet.load("yolo")
    assert isinstance(detector.preprocessor, WarpAffinePreprocessor)  # the core's CPU letterbox
    assert isinstance(detector.preprocessor, LetterboxPreprocessor)
    assert letterbox_of(detector.preprocessor) == detector.preprocessor.letterbox == "rect"
    assert detector._batch_key() is not None  # rect: one shape per batch

    def plain(images):  # a plugin's own mapping: no letterbox member
        return PreprocessedBatch(np.zeros((len(images), 3, 8, 8), np.float32), [])

    assert letterbox_of(plain) is None
    detector.preprocessor = plain
    assert detector._batch_key() is None  # any mix may share a batch


@pytest.mark.parametrize("letterbox", ["square", "warp"])
def test_only_rect_batches_by_shape(letterbox):
    detector = trtdet.load("yolo", letterbox=letterbox)
    assert letterbox_of(detector.preprocessor) == letterbox and detector._batch_key() is None


def test_a_builtin_backend_receives_the_context_load_resolved(monkeypatch):
    seen = []
    real = OnnxRuntimeBackend.load

    def load(self, model_file, spec, options, context=None):
        seen.append((options, context))
        return real(self, model_file, spec, options, context)

    monkeypatch.setattr(OnnxRuntimeBackend, "load", load)
    trtdet.load("yolo", device="cpu", batch=3, precision="fp16")
    options, context = seen[-1]
    assert context == RunContext(Device("cpu"), "fp16", 3)  # parsed once; no stream on the CPU
    assert (str(context.device), context.precision, context.batch) == (options.device, options.precision, options.batch)


def test_the_contracts_old_import_paths_still_work():
    """The contracts moved to ``trtdet.contracts``; plugins importing the old paths get the same objects."""
    import trtdet.contracts.artifact as artifact
    import trtdet.contracts.build_steps as build_steps
    import trtdet.contracts.engine as engine
    import trtdet.contracts.output_check as output_check
    from trtdet.engines import artifact as old_artifact
    from trtdet.engines import base as old_base
    from trtdet.engines import build_steps as old_steps
    from trtdet.engines import output_check as old_check

    for name in ("EngineBackend", "Engine", "BaseEngine", "LoadsOnly", "BackendDefaults", "ModelFile", "BuildRequest"):
        assert getattr(old_base, name) is getattr(engine, name), name
    assert old_steps.BuildStep is build_steps.BuildStep and old_check.check_outputs is output_check.check_outputs
    assert old_artifact.ArtifactMetadata is artifact.ArtifactMetadata
