"""An Ultralytics export (not the shipped file) compiles into a package that matches onnxruntime.

The fixture is a real Ultralytics 8.4 YOLOv8 export with a static batch of 1 (Ultralytics'
default), shrunk to 5 classes at 160x160 (``tests/data/make_ultralytics_fixtures.py``): the
package is compiled for batches 1..32 and checked at batch 3 against onnxruntime image by image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from trtdet.context import RunContext  # noqa: E402
from trtdet.contracts.engine import ModelFile  # noqa: E402
from trtdet.engines.inductor.build import build_package, package_cache  # noqa: E402
from trtdet.engines.inductor.runtime import InductorEngine  # noqa: E402
from trtdet.plugins import get_model  # noqa: E402

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[3] / "data" / "ultralytics" / "yolov8_static.onnx"


def test_a_static_batch_ultralytics_export_compiles_for_any_batch(tmp_path):
    import dataclasses

    spec = dataclasses.replace(get_model("yolo").spec, input_size=(160, 160))
    result = build_package(ModelFile(FIXTURE, "onnx"), spec, RunContext.of("cpu"), cache=package_cache(tmp_path))
    assert result.metadata.names and len(result.metadata.names) == 5
    engine = InductorEngine(result.path, result.metadata, cuda_graphs=False)
    engine.activate()
    rng = np.random.default_rng(0)
    batch = rng.random((3, 3, 160, 160), dtype=np.float32)
    got = next(iter(engine(batch).values()))
    session = ort.InferenceSession(str(FIXTURE), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    want = np.concatenate([session.run(None, {name: batch[i : i + 1]})[0] for i in range(3)])
    assert got.shape == want.shape == (3, 4 + 5, 525)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    engine.deactivate()
