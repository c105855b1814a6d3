"""Model objects (``trtdet.Model``): their factories, the registry that caches them, and old-style plugins."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import trtdet
from trtdet import Model, ModelSpec, RunContext, hookimpl
from trtdet.errors import ModelError, UsageError
from trtdet.plugins import get_model, list_build_steps, list_models, register_plugin, unregister_plugin
from trtdet.postprocess.host import HostDecoder
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.stages import make_decoder, make_preprocessor

from .fake_model import NAME, FakeBackend, FakeDecoder

SPEC = ModelSpec(name="model-object-test", class_names=("thing",), input_size=(8, 8), conf_threshold=0.0)


class Marker:
    """A decoder or preprocessor standing for the one a factory made (records the spec and context)."""

    def __init__(self, spec: ModelSpec, context: RunContext) -> None:
        self.spec, self.context = spec, context


def test_on_a_gpu_without_numba_the_host_decoder_runs_behind_host_decoder() -> None:
    def no_numba(spec: ModelSpec, context: RunContext) -> Marker:
        raise ImportError("No module named 'numba'")

    model = Model(SPEC, decoder=Marker, cuda_decoder=no_numba)
    cuda = RunContext.of("cuda:1", "fp16", 4)
    fallback = model.make_decoder(SPEC, cuda)
    assert isinstance(fallback, HostDecoder) and isinstance(fallback.decoder, Marker)
    assert fallback.decoder.context.device.index == 1 and fallback.decoder.context.precision == "fp16"
    assert isinstance(Model(SPEC, decoder=Marker).make_decoder(SPEC, cuda), HostDecoder)  # no GPU decoder at all
    gpu = Model(SPEC, decoder=Marker, cuda_decoder=Marker).make_decoder(SPEC, cuda)
    assert type(gpu) is Marker  # the GPU decoder, unwrapped
    cpu = model.make_decoder(SPEC, RunContext.of("cpu"))
    assert type(cpu) is Marker and cpu.context.kind == "cpu"


def test_a_model_without_decoder_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="no installed plugin decodes model 'model-object-test'"):
        Model(SPEC).make_decoder(SPEC, RunContext.of("cpu"))


def test_the_default_preprocessor_is_the_core_letterbox_made_from_the_spec() -> None:
    preprocessor = Model(SPEC).make_preprocessor(SPEC, RunContext.of("cpu"))
    assert isinstance(preprocessor, WarpAffinePreprocessor)
    assert (preprocessor.input_size, preprocessor.letterbox, preprocessor.border_value) == ((8, 8), "warp", 114)
    own = Model(SPEC, preprocessor=Marker).make_preprocessor(SPEC, RunContext.of("cpu"))
    assert type(own) is Marker


def test_run_context_checks_its_values() -> None:
    assert RunContext.of("CUDA:2").device.index == 2
    assert RunContext.of("cuda", "fp16").half and not RunContext.of("cpu", "fp16").half
    with pytest.raises(UsageError, match="precision: expected 'fp32' or 'fp16', got 'fp8'"):
        RunContext.of("cpu", "fp8")
    with pytest.raises(UsageError, match="batch: expected >= 1, got 0"):
        RunContext.of("cpu", "fp32", 0)


class CountingPlugin:
    """Registers a model object with its own decoder, preprocessor and build step; counts the register calls."""

    def __init__(self, model_file: Path) -> None:
        self.calls = 0
        self.backend = FakeBackend()
        self.model = Model(
            ModelSpec(name="counting-model-test", class_names=("thing",), input_size=(8, 8), conf_threshold=0.0,
                      default_model=lambda: model_file),
            decoder=lambda spec, context: FakeDecoder(),
            build_steps=lambda: [Step()],
        )

    @hookimpl
    def trtdet_register_models(self, register):
        self.calls += 1
        register(self.model)

    @hookimpl
    def trtdet_engine_backends(self, register):
        register(self.backend)


class Step:
    name, choices, default, help = "counting_step_test", ("a", "b"), "a", "A test step."


def test_register_hooks_run_once_until_the_plugins_change(tmp_path: Path) -> None:
    (tmp_path / "fake.onnx").write_bytes(b"fake")
    plugin = CountingPlugin(tmp_path / "fake.onnx")
    register_plugin(plugin, "counting-test-plugin")
    try:
        assert get_model("counting-model-test").model is plugin.model
        list_models(), get_model("counting-model-test")
        assert plugin.calls == 1  # resolved once, then cached
        assert list_build_steps()["counting_step_test"].plugin == "counting-test-plugin"  # the model's step
        with trtdet.load("counting-model-test", backend="fake") as detector:
            assert isinstance(detector.decoder, FakeDecoder)
            assert isinstance(detector.preprocessor, WarpAffinePreprocessor)
            assert detector(np.zeros((8, 8, 3), np.uint8)) is not None
        assert plugin.calls == 1
    finally:
        unregister_plugin("counting-test-plugin")
    assert "counting-model-test" not in list_models()  # the cache follows the plugins
    assert "counting_step_test" not in list_build_steps()


def test_a_plugin_on_the_old_hooks_still_loads_with_a_deprecation_warning(tmp_path: Path) -> None:
    from .fake_model import fake_model

    with fake_model(tmp_path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = get_model(NAME)
        assert type(info.model) is Model and info.model.decoder is None  # a bare ModelSpec, wrapped
        assert isinstance(make_decoder(info.spec, RunContext.of("cpu")), FakeDecoder)
    assert any(issubclass(w.category, DeprecationWarning) and "trtdet_decoder" in str(w.message) for w in caught)


def test_registering_something_else_leaves_the_plugin_out() -> None:
    class Wrong:
        @hookimpl
        def trtdet_register_models(self, register):
            register("yolo2")

    register_plugin(Wrong(), "wrong-register-test")
    try:
        with pytest.warns(UserWarning, match="expected a trtdet.Model"):
            models = list_models()
        assert "yolo" in models
    finally:
        unregister_plugin("wrong-register-test")


def test_an_old_preprocessor_hook_answers_for_its_model_only() -> None:
    class Legacy:
        @hookimpl
        def trtdet_preprocessor(self, model, device):
            return Marker(model, RunContext.of(device)) if model.name == SPEC.name else None

    register_plugin(Legacy(), "legacy-preprocessor-test")
    try:
        with pytest.warns(DeprecationWarning, match="trtdet_preprocessor"):
            own = make_preprocessor(SPEC, RunContext.of("cpu"))
        assert type(own) is Marker and own.spec is SPEC
        yolo = get_model("yolo").spec
        assert isinstance(make_preprocessor(yolo, RunContext.of("cpu")), WarpAffinePreprocessor)
    finally:
        unregister_plugin("legacy-preprocessor-test")
