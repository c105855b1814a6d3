"""``trtdet.load``: argument validation (one-line errors), overrides, and the one spec after loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import trtdet
from trtdet.errors import ModelError, UsageError

from .fake_model import NAME, fake_model


@pytest.fixture
def fake(tmp_path):
    with fake_model(tmp_path) as plugin:
        yield plugin


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(device="gpu"), "device: expected 'cpu', 'cuda' or 'cuda:N'"),
        (dict(precision="int8"), "precision: expected 'fp32' or 'fp16', got 'int8'"),
        (dict(batch=0), "batch: expected >= 1, got 0"),
        (dict(backend="tensorrtt"), "unknown or uninstalled backend 'tensorrtt' (installed: "),
        (dict(backend="tensorrt"), "backend 'tensorrt' cannot run on cpu: TensorRT runs on CUDA GPUs only"),
    ],
)
def test_bad_arguments_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError) as info:
        trtdet.load("yolo", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_model_lists_the_known_ones_and_a_close_match():
    with pytest.raises(UsageError, match=r"unknown model 'yolov' \(known: .*yolo.*\); did you mean 'yolo'\?"):
        trtdet.load("yolov")


def test_at_most_one_model_file(tmp_path, yolo_onnx):
    with pytest.raises(UsageError, match="give at most one of --weights, --onnx, --engine"):
        trtdet.load("yolo", onnx=yolo_onnx, weights=yolo_onnx)


def test_a_missing_or_broken_model_file_is_a_model_error_naming_it(tmp_path):
    with pytest.raises(ModelError, match=r"missing\.onnx: model file not found"):
        trtdet.load("yolo", onnx=tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelError, match=r"broken\.onnx: onnxruntime cannot load it"):
        trtdet.load("yolo", onnx=broken)


def test_overrides_reach_the_one_spec_every_stage_was_built_from(yolo_onnx):
    with trtdet.load("yolo", onnx=yolo_onnx, conf=0.5, iou=0.3, input_size=(320, 416), batch=2) as detector:
        spec = detector.spec
        assert (spec.conf_threshold, spec.iou_threshold, spec.input_size) == (0.5, 0.3, (320, 416))
        assert detector.preprocessor.input_size == spec.input_size
        assert (detector.decoder.conf_threshold, detector.decoder.iou_threshold) == (0.5, 0.3)
        assert detector.class_names == spec.class_names and len(spec.class_names) == 80  # from the file
        assert detector.batch == 2
        assert detector(np.zeros((100, 120, 3), np.uint8)) is not None


def test_the_spec_after_load_is_adapted_to_the_model_file(fake):
    """A fixed 8x8 file input wins over a requested input size, for the preprocessor too."""
    with trtdet.load(NAME, backend="fake", input_size=(32, 32)) as detector:
        assert detector.spec.input_size == (8, 8)
        assert detector.preprocessor.input_size == (8, 8)
        registered = trtdet.plugins.get_model(NAME).spec
        want = dataclasses.replace(registered, input_size=(8, 8), default_model=None)
        assert dataclasses.replace(detector.spec, default_model=None) == want


def test_a_batch_larger_than_the_engine_takes_is_capped(fake):
    with trtdet.load(NAME, backend="fake", batch=64) as detector:
        assert detector.batch == 64  # unbounded engine
    fake.backend.load = lambda *a: _bounded(fake)
    with trtdet.load(NAME, backend="fake", batch=64) as detector:
        assert detector.batch == 4


def _bounded(fake):
    from .fake_model import FakeEngine

    class Bounded(FakeEngine):
        def activate_impl(self):
            super().activate_impl()
            self.max_batch = 4

    return Bounded()


def test_load_shows_its_real_signature_and_documents_every_keyword():
    import inspect

    signature = inspect.signature(trtdet.load)
    names = list(signature.parameters)
    assert names[0] == "model" and "options" in names and len(names) > 10
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(signature.parameters.values())[1:])
    assert set(names) - {"model"} == {f.name for f in dataclasses.fields(trtdet.options.DetectorOptions)} | {"options"}
    doc = inspect.getdoc(trtdet.load)
    assert [name for name in names if f"``{name}``" not in doc] == []


def test_batch_size_is_the_old_name_of_batch():
    """``Detector.batch`` is the one name; ``batch_size`` (attribute and keyword) still works, with a DeprecationWarning."""
    import warnings

    import trtdet
    from trtdet.pipeline import Detector

    detector = trtdet.load("yolo", batch=3)
    with pytest.warns(DeprecationWarning, match="Detector.batch_size is deprecated: it was renamed Detector.batch"):
        assert detector.batch_size == 3
    with pytest.warns(DeprecationWarning, match="renamed Detector.batch"):
        detector.batch_size = 2
    assert detector.batch == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detector.batch == 2  # the new name warns about nothing
    with pytest.warns(DeprecationWarning, match="batch_size is deprecated: it was renamed batch"):
        again = Detector(detector.spec, detector.preprocessor, detector.engine, detector.decoder, batch_size=5)
    assert again.batch == 5
