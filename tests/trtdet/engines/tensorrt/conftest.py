"""Fixtures for the TensorRT tests: TensorRT-RTX, the backend and CenterNet hooks, shared builds.

Builds take seconds each on 2 cores, so each model is built once per module into a
module-scoped cache directory and shared by the tests that inspect it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trtdet.plugins import load_plugins, register_plugin, unregister_plugin

MODULES = {
    "trtdet.engines.tensorrt.backend": "trtdet.engines.tensorrt.backend",
    "centernet_tensorrt": "trtdet_centernet.tensorrt.hooks",
}


def registered_name(module_name: str) -> str | None:
    """The name under which ``module_name`` is registered with the plugin manager, if any."""
    import importlib

    pm = load_plugins()
    module = importlib.import_module(module_name)
    return pm.get_name(module) if pm.is_registered(module) else None


@pytest.fixture(scope="session")
def tensorrt_plugins() -> Iterator[None]:
    """The TensorRT backend and CenterNet's TensorRT hooks, registered unless the install already did."""
    import importlib

    added = []
    for name, module_name in MODULES.items():
        if registered_name(module_name) is None:
            register_plugin(importlib.import_module(module_name), name=name)
            added.append(name)
    yield
    for name in added:
        unregister_plugin(name)


@pytest.fixture(scope="session")
def rtx():
    """The TensorRT-RTX module (the ``rtx`` extra); builds run on the CPU machine."""
    return pytest.importorskip(
        "tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed (pip install 'trtdet[rtx]')"
    )


def centernet_model():
    """A ResDCN-18 CenterNet with random weights, DCN offsets and masks made to matter."""
    torch = pytest.importorskip("torch")
    from trtdet_centernet.network import build_centernet

    torch.manual_seed(0)
    model = build_centernet(18, 80, 64)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if "conv_offset_mask" in name:  # default init is zero: make the offsets and masks matter
                value.normal_(0.0, 0.3 if name.endswith("weight") else 1.0)
            elif name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
    return model.eval()


def centernet_export(directory: Path, *, dynamic_batch: bool = True) -> Path:
    """``centernet_model()`` exported at 128x128 (standard ``DeformConv``)."""
    from trtdet_centernet.export import export_model

    return export_model(
        centernet_model(), directory / "centernet128.onnx", input_size=(128, 128), dynamic_batch=dynamic_batch
    )


@pytest.fixture(scope="module")
def centernet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return centernet_export(tmp_path_factory.mktemp("centernet"))


SAMPLE_PLAN = bytes(range(256)) * 4


@pytest.fixture
def sample_plan() -> bytes:
    """Stand-in plan bytes for format and cache tests (no TensorRT involved)."""
    return SAMPLE_PLAN


@pytest.fixture
def make_metadata():
    """A factory of engine metadata with field overrides."""
    from dataclasses import replace

    from trtdet.contracts.artifact import ArtifactMetadata, RequiredPlugin, TensorInfo

    base = ArtifactMetadata(
        model="yolo",
        names=("person", "bicycle"),
        input_size=(640, 640),
        precision="fp16",
        runtime="rtx",
        runtime_version="1.7.1.116",
        compute_capability="aot",
        gpu_name="",
        source_sha256="ab" * 32,
        max_batch=4,
        trtdet_version="0.1.0",
        build_options={},
        inputs=(TensorInfo("images", (-1, 3, 640, 640), "float32"),),
        outputs=(TensorInfo("output0", (-1, 84, 8400), "float32"),),
        plugins=(RequiredPlugin("TrtdetDCNv2", "1", "trtdet", "trtdet"),),
        extra={"payload_bytes": len(SAMPLE_PLAN)},
    )

    def make(**changes) -> ArtifactMetadata:
        return replace(base, **changes)

    return make


@pytest.fixture(scope="module")
def centernet_torch_model():
    return centernet_model()
