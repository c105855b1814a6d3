"""Build small ONNX graphs and compare the converted module with onnxruntime (the judge)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from trtdet.onnx_torch import convert

#: float32 tolerance against onnxruntime: both compute in float32 with different kernels.
RTOL = ATOL = 1e-5


def make_model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, tuple], outputs: Sequence[str], *,
               initializers: dict[str, np.ndarray] | None = None, opset: int = 17,
               input_types: dict[str, int] | None = None) -> onnx.ModelProto:
    """A graph whose inputs have a dynamic leading batch ``N`` and the given per-sample shapes."""
    types = input_types or {}
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), ["N", *shape]) for n, shape in inputs.items()],
        [onnx.ValueInfoProto(name=n) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 19 else 9
    return model


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def torch_run(module: torch.nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(v) for v in feeds.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def random_feeds(inputs: dict[str, tuple], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, *shape)).astype(np.float32) for n, shape in inputs.items()}


def assert_matches_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, rtol: float = RTOL,
                               atol: float = ATOL, module: torch.nn.Module | None = None) -> None:
    expected = ort_run(model, feeds)
    module = module if module is not None else convert(model, converters={})
    got = torch_run(module, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape, f"shape {g.shape} != onnxruntime's {e.shape}"
        if e.dtype == bool or e.dtype.kind in "iu":
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
