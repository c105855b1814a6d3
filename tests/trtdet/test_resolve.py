"""Choosing model files and engine backends; export caching; metadata adapting the spec."""

from __future__ import annotations

import dataclasses

import pytest

import trtdet
from trtdet.backend_choice import choose_backend
from trtdet.class_names import parse_class_names
from trtdet.contracts.engine import ModelFile
from trtdet.engines.onnxruntime_backend import OnnxRuntimeBackend
from trtdet.errors import UsageError
from trtdet.exports import export_cached
from trtdet.hookspecs import hookimpl
from trtdet.model_file import resolve_model_file
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model, list_engine_backends, register_plugin, unregister_plugin
from trtdet.spec_adapt import adapt_spec


def test_class_names_from_json_and_ultralytics_metadata():
    assert parse_class_names('["a", "b"]') == ("a", "b")
    assert parse_class_names("{0: 'person', 1: 'bicycle'}") == ("person", "bicycle")
    assert parse_class_names("{1: 'x'}") is None and parse_class_names("not names") is None


def test_auto_picks_onnxruntime_on_cpu_for_onnx(yolo_onnx):
    assert choose_backend("auto", ModelFile(yolo_onnx, "onnx"), "cpu").name == "onnxruntime"


def test_unknown_backend_lists_the_installed_ones(yolo_onnx):
    with pytest.raises(UsageError, match=r"unknown or uninstalled backend 'tensorrtt' \(installed: .*onnxruntime"):
        choose_backend("tensorrtt", ModelFile(yolo_onnx, "onnx"), "cpu")


def test_only_one_model_file_may_be_given(yolo_onnx):
    with pytest.raises(UsageError, match="at most one of --weights, --onnx, --engine"):
        resolve_model_file(get_model("yolo").spec, DetectorOptions(onnx=yolo_onnx, engine=yolo_onnx))


def test_spec_takes_names_and_fixed_size_from_the_model_file(yolo_onnx):
    spec = dataclasses.replace(get_model("yolo").spec, class_names=("only",))
    with OnnxRuntimeBackend().load(ModelFile(yolo_onnx, "onnx"), spec, DetectorOptions()) as engine:
        adapted = adapt_spec(spec, engine)
    assert adapted.class_names[:3] == ("person", "bicycle", "car") and len(adapted.class_names) == 80
    assert adapted.input_size == spec.input_size  # the file's H and W are dynamic


class PreferredBackend(OnnxRuntimeBackend):
    """ONNX Runtime under another name and a higher priority, switchable off."""

    name = "preferred-test"
    priority = 1000
    available = True

    def unavailable_reason(self, device):
        return None if self.available else "switched off for the test"


class BackendPlugin:
    backend = PreferredBackend()

    @hookimpl
    def trtdet_engine_backends(self, register):
        register(self.backend)


def test_engine_backends_hook_registers_and_auto_respects_availability(yolo_onnx):
    plugin = BackendPlugin()
    register_plugin(plugin, "backend-test-plugin")
    try:
        assert "preferred-test" in list_engine_backends()
        assert choose_backend("auto", ModelFile(yolo_onnx, "onnx"), "cpu").name == "preferred-test"
        detector = trtdet.load("yolo")
        assert detector.backend == "onnxruntime"  # the engine object keeps ORT's backend label
        plugin.backend.available = False
        assert choose_backend("auto", ModelFile(yolo_onnx, "onnx"), "cpu").name == "onnxruntime"
        with pytest.raises(UsageError, match="backend 'preferred-test' cannot run on cpu: switched off for the test"):
            choose_backend("preferred-test", ModelFile(yolo_onnx, "onnx"), "cpu")
    finally:
        unregister_plugin("backend-test-plugin")


def test_checkpoints_are_exported_once_and_cached(tmp_path, yolo_onnx):
    calls = []

    def exporter(weights, output, *, input_size, dynamic_batch):
        calls.append((weights, input_size))
        output.write_bytes(yolo_onnx.read_bytes())  # a real ONNX, so the result loads
        return output

    spec = dataclasses.replace(get_model("yolo").spec, exporter=exporter)
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"weights v1")
    first = export_cached(spec, weights, (640, 640))
    second = export_cached(spec, weights, (640, 640))
    assert first == second and len(calls) == 1 and first.read_bytes() == yolo_onnx.read_bytes()
    weights.write_bytes(b"weights v2")
    assert export_cached(spec, weights, (640, 640)) != first and len(calls) == 2


def test_a_backend_name_registered_twice_names_both():
    class Duplicate(OnnxRuntimeBackend):
        pass

    class DuplicatePlugin:
        @hookimpl
        def trtdet_engine_backends(self, register):
            register(Duplicate())

    register_plugin(DuplicatePlugin(), "duplicate-backend-plugin")
    try:
        with pytest.raises(UsageError, match=r"engine backend 'onnxruntime' is registered twice: by ") as info:
            list_engine_backends()
        assert "tests.trtdet.test_resolve" in str(info.value) and "trtdet.engines.onnxruntime_backend" in str(info.value)
    finally:
        unregister_plugin("duplicate-backend-plugin")
