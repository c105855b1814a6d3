"""Compile settings for networks that index memory with data (the end-to-end heads' TopK -> gather).

AOTInductor's compile-time autotuning runs each Triton kernel on synthetic random tensors; a
gather whose indices come from them trips Inductor's bounds assert, which is how the YOLO26 and
YOLOv10 end-to-end heads failed to compile on an H100 ("Failed to run autotuning code block").
Such graphs compile on CUDA with that autotuning off (tuned on the real example input instead);
the GPU half is tests/trtdet/gpu/test_gpu_families.py::test_inductor_compiles_the_end_to_end_heads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trtdet.engines.inductor.build import compile_settings, indexes_with_data  # noqa: E402
from trtdet.onnx_torch import convert  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "data" / "ultralytics"


def _exported(name: str, size: int) -> torch.export.ExportedProgram:
    module = convert(DATA / name, input_size=(size, size))
    example = torch.zeros((2, 3, size, size))
    return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=32)},), strict=False)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "indexes"), [("yolo26_e2e_dynamic.onnx", True), ("yolov10_e2e_dynamic.onnx", True),
                                               ("yolo11_dynamic.onnx", False)])
def test_the_end_to_end_heads_are_found_to_index_with_data(name, indexes):
    program = _exported(name, 160)
    assert indexes_with_data(program) is indexes
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert ("aten.topk.default" in targets and "aten.gather.default" in targets) is indexes


def test_a_cuda_compile_of_such_a_graph_tunes_on_real_inputs():
    plain = compile_settings("g++", "cuda")
    indexing = compile_settings("g++", "cuda", data_indexing=True)
    assert "triton.autotune_at_compile_time" not in plain
    assert indexing["triton.autotune_at_compile_time"] is False
    assert {k: v for k, v in indexing.items() if k != "triton.autotune_at_compile_time"} == plain
    # the CPU compiles C++ kernels, with no Triton autotuning to turn off
    assert "triton.autotune_at_compile_time" not in compile_settings("g++", "cpu", data_indexing=True)
    # the settings exist in this torch (config.patch refuses unknown keys)
    with torch._inductor.config.patch({k: v for k, v in indexing.items() if k != "cpp.cxx"}):
        assert torch._inductor.config.triton.autotune_at_compile_time is False
