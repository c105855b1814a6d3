"""CenterNet's TensorRT hooks: register the DCNv2 plugin creator, lower DCN nodes per build.

Registered as a trtdet plugin module of its own (entry point ``centernet_tensorrt``), so the
core reaches it only through the ``trtdet_tensorrt_*`` hooks. The rewrite applies to any
model with deformable convolutions, not only CenterNet's.
"""

from __future__ import annotations

from types import ModuleType

import onnx

from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec


@hookimpl
def trtdet_tensorrt_prepare(
    model: ModelSpec, trt: ModuleType, flavour: str
) -> list[tuple[str, str, str]] | None:
    # TensorRT-RTX's parser aborts the process when it creates a Python plugin: offer none there
    # (builds for it use the decomposed DCN).
    if flavour == "rtx":
        return None
    from trtdet_centernet.tensorrt.plugin import register_dcn_plugin

    return [register_dcn_plugin(trt)]


@hookimpl
def trtdet_tensorrt_rewrite_onnx(
    model: ModelSpec, onnx_model: onnx.ModelProto, flavour: str, dcn: str
) -> onnx.ModelProto | None:
    from trtdet_centernet.tensorrt.rewrite import rewrite_dcn

    return rewrite_dcn(onnx_model, dcn, source=model.name)
