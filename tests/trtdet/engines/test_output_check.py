"""The first batch's real outputs against the shapes the engine declared: a contradiction fails the model."""

from __future__ import annotations

import numpy as np
import pytest

import trtdet
from trtdet.contracts.output_check import check_outputs
from trtdet.errors import ModelError, ModelOutputError

from .. import fake_model
from ..fake_model import NAME, image


def test_declared_and_actual_shapes_compared_by_hand():
    outputs = {"output0": np.zeros((1, 8400, 84), np.float32)}
    check_outputs({"output0": ("batch", 8400, 84)}, outputs, "m.onnx")  # symbolic dims take any size
    check_outputs({"output0": (-1, 8400, 84)}, outputs, "m.onnx")  # TensorRT's -1: any size
    check_outputs({"output0": ()}, outputs, "m.onnx")  # unknown at load: a trial run checked it
    with pytest.raises(ModelOutputError) as info:
        check_outputs({"output0": ("batch", 84, "anchors")}, outputs, "m.onnx")
    assert str(info.value) == ("m.onnx: output output0 is [1, 8400, 84] when run, but the model declares "
                               "['batch', 84, 'anchors']; its declared output shape is wrong (re-export the model)")
    with pytest.raises(ModelOutputError, match=r"output output0 is \[1, 8400, 84\] when run, but the model declares \[1, 8400\]"):
        check_outputs({"output0": (1, 8400)}, outputs, "m.onnx")
    with pytest.raises(ModelOutputError, match=r"^m.onnx: the engine returned no output 'boxes' \(got \['output0'\]\)$"):
        check_outputs({"boxes": (1, 4)}, outputs, "m.onnx")
    assert issubclass(ModelOutputError, ModelError)  # exit 1 on the CLI, like every model error


@pytest.fixture
def lying_engine(tmp_path, monkeypatch):
    """The fake model's engine declares ``[B, 1]`` but returns ``[B, 1, 1]``."""
    real = fake_model.FakeEngine.infer_impl

    def infer(self, batch):
        return {name: value[:, :, None] for name, value in real(self, batch).items()}

    monkeypatch.setattr(fake_model.FakeEngine, "infer_impl", infer)
    with fake_model.fake_model(tmp_path) as plugin:
        yield plugin


def test_every_way_in_fails_on_the_first_batch_and_after(lying_engine):
    expected = r"fake\.onnx: output output is \[2, 1, 1\] when run, but the model declares \[None, 1\]"
    with trtdet.load(NAME, backend="fake", batch=2) as detector:
        with pytest.raises(ModelOutputError, match=expected):
            detector.detect([image(10), image(20)])
        calls = list(lying_engine.backend.engines[0].calls)
        with pytest.raises(ModelOutputError, match=expected):  # later batches: the same error, no engine run
            detector([image(10), image(20)])
        with pytest.raises(ModelOutputError, match=expected):
            detector.submit(image(30)).result(timeout=30)
        assert lying_engine.backend.engines[0].calls == calls


def test_a_stream_raises_instead_of_failing_each_input(lying_engine, tmp_path):
    import cv2

    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), image(10 * (k + 1)))
    with trtdet.load(NAME, backend="fake", batch=2) as detector, pytest.raises(ModelOutputError, match="when run"):
        list(detector.stream(str(tmp_path / "*.png")))
