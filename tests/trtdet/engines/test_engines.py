"""The engine contract: Polygraphy's runner lifecycle and where outputs live, for the built-in engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtdet.contracts.engine import ModelFile
from trtdet.engines.onnxruntime_backend import OnnxRuntimeBackend
from trtdet.errors import ModelError
from trtdet.options import DetectorOptions
from trtdet.plugins import get_model
from trtdet.postprocess import HostDecoder

torch = pytest.importorskip("torch")


def test_onnxruntime_engine_does_its_heavy_work_on_activation(yolo_onnx, tmp_path):
    engine = OnnxRuntimeBackend().load(ModelFile(yolo_onnx, "onnx"), get_model("yolo").spec, DetectorOptions())
    assert not engine.is_active and engine.session is None  # nothing loaded yet
    with pytest.raises(RuntimeError, match="the onnxruntime engine is not active"):
        engine(np.zeros((1, 3, 64, 64), np.float32))
    with engine as active:
        assert active is engine and engine.is_active and engine.session is not None
        assert engine.input_name == "images" and engine.metadata["names"]
        batch = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
        from_numpy = engine(batch)["output0"]
        from_torch = engine(torch.from_numpy(batch))["output0"]
        assert type(from_numpy) is np.ndarray and type(from_torch) is np.ndarray  # cpu: numpy, whatever the input
        np.testing.assert_array_equal(from_numpy, from_torch)
    assert not engine.is_active and engine.session is None
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    lazy = OnnxRuntimeBackend().load(ModelFile(broken, "onnx"), get_model("yolo").spec, DetectorOptions())
    with pytest.raises(ModelError, match="broken.onnx: onnxruntime cannot load it"):
        lazy.activate()
    assert not lazy.is_active


def test_torch_engine_opens_its_module_on_activation_and_returns_numpy_on_the_cpu():
    from trtdet.engines.torch_backend import OpenedModule, TorchEngine

    opened = []

    def open_module():
        opened.append(1)
        return OpenedModule(torch.nn.Conv2d(3, 2, 1), ["output"], {"names": '["a", "b"]'})

    engine = TorchEngine(open_module, Path("<test>"), DetectorOptions())
    assert not opened and not engine.is_active
    with engine:
        assert opened == [1] and engine.metadata == {"names": '["a", "b"]'}
        batch = np.ones((2, 3, 4, 4), np.float32)
        for given in (batch, torch.from_numpy(batch)):
            out = engine(given)["output"]
            assert type(out) is np.ndarray and out.shape == (2, 2, 4, 4) and out.dtype == np.float32
        engine.activate()  # idempotent
        assert opened == [1]
    assert engine.module is None


def test_torch_engine_from_an_existing_module():
    from trtdet.engines.torch_backend import TorchEngine

    module = torch.nn.Identity()
    with TorchEngine.from_module(module, DetectorOptions(), output_names=("x",)) as engine:
        np.testing.assert_array_equal(engine(np.full((1, 3, 2, 2), 7, np.float32))["x"], np.full((1, 3, 2, 2), 7))


def test_host_decoder_gives_a_numpy_decoder_host_arrays():
    seen = {}

    class NumpyDecoder:
        output_name = "out"

        def validate(self, output_shapes, source):
            seen["validated"] = (output_shapes, source)

        def __call__(self, outputs, transforms):
            seen["types"] = {name: type(value) for name, value in outputs.items()}
            return [outputs["out"].dtype]

    decoder = HostDecoder(NumpyDecoder())
    decoder.validate({"out": (1, 2)}, "m.onnx")
    assert seen["validated"] == ({"out": (1, 2)}, "m.onnx")
    # A CPU torch tensor stands in for a CUDA one (same API: .detach().float().cpu().numpy()).
    assert decoder({"out": torch.ones(1, 2, dtype=torch.float16)}, []) == [np.float32]
    assert seen["types"] == {"out": np.ndarray}
    assert decoder.output_name == "out"  # the wrapped decoder's settings show through
