"""The ``dcn`` build step: how an engine build lowers CenterNet's deformable convolutions.

Choices: ``builtin`` (ONNX ``DeformConv`` left for TensorRT >= 10.1's own
``ModulatedDeformConv2d`` plugin), ``plugin`` (this package's DCNv2 TensorRT plugin, a Python
``IPluginV3``), ``decomposed`` (standard ONNX ops only: any TensorRT, TensorRT-RTX), and
``auto``: builtin where the TensorRT has it, else the plugin where Python plugins work, else
decomposed. The step applies to this package's models when their ONNX has deformable
convolutions (standard or legacy encodings, ``trtdet_centernet.dcn_nodes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtdet.contracts.build_steps import RuntimeInfo, StepPlugins, option_text
from trtdet.errors import UsageError
from trtdet.model import ModelSpec
from trtdet_centernet.dcn_nodes import OP_TYPES, dcn_nodes
from trtdet_centernet.plugin import CENTERNET

if TYPE_CHECKING:  # registering the step must not import onnx: only a build (which loads an ONNX) does
    import onnx

NAME = "dcn"
LOWERINGS = ("builtin", "plugin", "decomposed")


def has_builtin_deform_conv(runtime: RuntimeInfo) -> bool:
    """TensorRT >= 10.1 imports ONNX ``DeformConv`` as its ``ModulatedDeformConv2d`` plugin."""
    return runtime.runtime == "tensorrt" and runtime.version_tuple >= (10, 1)


@dataclass(frozen=True)
class DcnLowering:
    """The ``dcn`` build step (see the module docstring)."""

    models: tuple[str, ...] = (CENTERNET.name,)
    name: str = NAME
    choices: tuple[str, ...] = ("auto", *LOWERINGS)
    default: str = "auto"
    help: str = "Deformable-convolution lowering: TensorRT's own plugin, the model plugin's, or standard ops."

    def applies(self, onnx_model: onnx.ModelProto, spec: ModelSpec) -> bool:
        return spec.name in self.models and bool(dcn_nodes(onnx_model))

    def resolve(self, choice: str, runtime: RuntimeInfo) -> str:
        if choice == "auto":
            if has_builtin_deform_conv(runtime):
                return "builtin"
            return "plugin" if runtime.python_plugins else "decomposed"
        if choice == "builtin" and not has_builtin_deform_conv(runtime):
            raise UsageError(
                f"{option_text(NAME, 'builtin')} needs TensorRT >= 10.1 (its ModulatedDeformConv2d plugin); "
                f"{runtime.label} has no DeformConv importer: use {option_text(NAME, 'decomposed')}"
            )
        if choice == "plugin" and not runtime.python_plugins:
            raise UsageError(
                f"{option_text(NAME, 'plugin')} needs a TensorRT whose parser accepts Python plugins; "
                f"{runtime.label} aborts on them: use {option_text(NAME, 'decomposed')}"
            )
        return choice

    def rewrite(self, onnx_model: onnx.ModelProto, spec: ModelSpec, choice: str) -> onnx.ModelProto:
        from trtdet_centernet.tensorrt.rewrite import rewrite_dcn

        rewritten = rewrite_dcn(onnx_model, choice, source=spec.name)
        return onnx_model if rewritten is None else rewritten

    def prepare(self, choice: str, runtime: RuntimeInfo) -> StepPlugins:
        if choice == "builtin":
            return StepPlugins(plugin_library=True)
        # TensorRT-RTX's parser aborts the process when it creates a Python plugin: none there.
        if choice == "plugin" and runtime.python_plugins and runtime.module is not None:
            from trtdet_centernet.tensorrt.plugin import register_dcn_plugin

            return StepPlugins(creators=(register_dcn_plugin(runtime.module),))
        return StepPlugins()

    def parse_hint(self, op_type: str, choice: str, runtime: RuntimeInfo) -> str | None:
        from trtdet_centernet.tensorrt.plugin import PLUGIN_NAME

        if op_type not in OP_TYPES and not (choice == "plugin" and op_type == PLUGIN_NAME):
            return None
        working = ("builtin", "decomposed") if has_builtin_deform_conv(runtime) else ("decomposed",)
        return (
            f"deformable convolution: rebuild with {' or '.join(option_text(NAME, c) for c in working)} "
            f"(this build used {option_text(NAME, choice)})"
        )


DCN_STEP = DcnLowering()
