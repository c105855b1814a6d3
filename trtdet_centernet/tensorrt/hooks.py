"""CenterNet's contribution to engine builds: the ``dcn`` build step (``step.DcnLowering``).

Registered as a trtdet plugin module of its own (entry point ``centernet_tensorrt``), so the
core reaches it only through the ``trtdet_build_steps`` hook. The step applies to CenterNet
models only; it lowers their deformable convolutions and registers the DCNv2 TensorRT
plugin creator when a build or an engine needs it.
"""

from __future__ import annotations

from collections.abc import Callable

from trtdet.contracts.build_steps import BuildStep
from trtdet.hookspecs import hookimpl
from trtdet_centernet.tensorrt.step import DCN_STEP


@hookimpl
def trtdet_build_steps(register: Callable[[BuildStep], None]) -> None:
    register(DCN_STEP)
