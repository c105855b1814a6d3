"""A fake model whose every stage is hand-computable, registered as a plugin for pipeline tests.

The network input is 8x8. The engine's output per image is its mean input value (after the
core preprocessor's ``/255``), as ``{"output": [B, 1]}``. The decoder turns value ``v`` into one
box ``[0, 0, 8v, 8v]`` in network pixels with score ``v``, class 0, then maps it back
through the image's transform; a batch holding a "poison" image (all pixels 13) fails to
decode, so only that image should fail once its batch is retried one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from trtdet.contracts.engine import BaseEngine
from trtdet.detections import Detections
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.plugins import register_plugin, unregister_plugin

NAME = "fake-test"
POISON = 13


class FakeEngine(BaseEngine):
    backend = "fake"

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self.activations = 0
        self.calls: list[int] = []  # batch sizes, in call order

    def activate_impl(self) -> None:
        self.activations += 1
        self.input_name = "images"
        self.input_shape = (None, 3, 8, 8)
        self.output_shapes = {"output": (None, 1)}
        self.max_batch = None
        self.metadata = {}

    def deactivate_impl(self) -> None:
        pass

    def infer_impl(self, batch):
        batch = np.asarray(batch)
        self.calls.append(len(batch))
        return {"output": batch.reshape(len(batch), -1).mean(axis=1, keepdims=True).astype(np.float32)}


class FakeDecoder:
    def validate(self, output_shapes, source):
        assert "output" in output_shapes

    def __call__(self, outputs, transforms):
        values = outputs["output"][:, 0]
        # Mean 13/255 only for an all-13 image (the 8x8 letterbox has no border for a square).
        if np.any(np.isclose(values, POISON / 255.0, atol=1e-6)):
            raise ValueError("poisoned batch")
        results = []
        for value, transform in zip(values, transforms, strict=True):
            box = np.array([[0, 0, 8 * value, 8 * value]], np.float32)
            results.append(Detections(transform.boxes_to_source(box), np.array([value], np.float32), np.zeros(1, np.int64)))
        return results


class FakeBackend:
    name = "fake"
    priority = -1000  # never chosen by --backend auto for other models
    file_kinds = ("onnx",)

    def __init__(self) -> None:
        self.engines: list[FakeEngine] = []

    def unavailable_reason(self, device):
        return None if device == "cpu" else "the fake backend runs on the CPU"

    def load(self, model_file, spec, options):
        engine = FakeEngine(options.device)
        self.engines.append(engine)
        return engine


class FakePlugin:
    def __init__(self, model_file: Path) -> None:
        self.backend = FakeBackend()
        self.model_file = model_file

    @hookimpl
    def trtdet_register_models(self, register):
        register(ModelSpec(name=NAME, class_names=("thing",), input_size=(8, 8), mean=(0.0, 0.0, 0.0),
                           std=(1.0, 1.0, 1.0), border_value=0, conf_threshold=0.0,
                           default_model=lambda: self.model_file))

    @hookimpl
    def trtdet_engine_backends(self, register):
        register(self.backend)

    @hookimpl
    def trtdet_decoder(self, model, device):
        return FakeDecoder() if model.name == NAME else None


@contextmanager
def fake_model(tmp_path: Path) -> Iterator[FakePlugin]:
    """The fake model and backend registered (``trtdet.load("fake-test", backend="fake")``)."""
    model_file = tmp_path / "fake.onnx"
    model_file.write_bytes(b"fake")
    plugin = FakePlugin(model_file)
    register_plugin(plugin, "fake-test-plugin")
    try:
        yield plugin
    finally:
        unregister_plugin("fake-test-plugin")


def image(value: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A flat ``size`` image of ``value``; at 8x8 (identity transform) its detection is the box
    ``[0, 0, 8v/255, 8v/255]`` with score ``v/255``."""
    return np.full((*size, 3), value, np.uint8)
