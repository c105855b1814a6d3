"""Put an ONNX model's deformable convolutions in the form a TensorRT build asked for.

* legacy tutorial exports (op ``Plugin`` name ``DCNv2``, or op ``DCNv2``) first become the
  standard layout with ``DeformConv`` (``trtdet_centernet.legacy``);
* ``decomposed``: ``DeformConv`` -> standard ops (``decomposed.py``);
* ``plugin``: ``DeformConv`` -> op ``TrtdetDCNv2`` (this package's TensorRT plugin), whose
  attributes the TensorRT ONNX parser hands to the plugin creator as fields;
* ``builtin``: ``DeformConv`` stays for TensorRT's own ``ModulatedDeformConv2d``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtdet.contracts.build_steps import option_text
from trtdet.errors import ModelError
from trtdet_centernet.dcn_nodes import STANDARD_OP, has_legacy_dcn
from trtdet_centernet.tensorrt.decomposed import decompose_deform_conv
from trtdet_centernet.tensorrt.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

LOWERINGS = ("builtin", "plugin", "decomposed")


def legacy_to_standard(model: onnx.ModelProto) -> onnx.ModelProto:
    """The standard CenterNet layout (``DeformConv``, fused output) of a legacy tutorial export."""
    from trtdet_centernet.legacy import convert_legacy_onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "legacy.onnx", Path(tmp) / "standard.onnx"
        onnx.save(model, str(src))
        convert_legacy_onnx(src, dst)
        return onnx.load(str(dst))


def _static_dims(model: onnx.ModelProto, name: str) -> list[int] | None:
    for init in model.graph.initializer:
        if init.name == name:
            return list(init.dims)
    return None


def deform_conv_to_plugin(model: onnx.ModelProto, source: str = "model") -> onnx.ModelProto:
    """A copy of ``model`` with each ``DeformConv`` replaced by a ``TrtdetDCNv2`` plugin node."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    nodes = []
    for index, node in enumerate(result.graph.node):
        if node.op_type != STANDARD_OP:
            nodes.append(node)
            continue
        name = node.name or f"DeformConv_{index}"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("group", 1)) != 1:
            raise ModelError(
                f"{source}: DeformConv node {name!r} has group={attrs['group']}; the {PLUGIN_NAME} "
                f"plugin supports group=1 only: use {option_text('dcn', 'decomposed')}"
            )
        pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
        if pads[:2] != pads[2:]:
            raise ModelError(
                f"{source}: DeformConv node {name!r} has asymmetric pads {pads}: use {option_text('dcn', 'decomposed')}"
            )
        inputs = list(node.input) + [""] * (5 - len(node.input))
        x, w, offset, bias, mask = inputs[:5]
        if not bias:
            w_dims = _static_dims(result, w)
            if not w_dims:
                raise ModelError(f"{source}: DeformConv node {name!r}: no bias and weight shape unknown")
            bias = f"{name}/zero_bias"
            result.graph.initializer.append(numpy_helper.from_array(np.zeros(w_dims[0], np.float32), bias))
        plugin_inputs = [x, w, offset, bias] + ([mask] if mask else [])
        nodes.append(
            helper.make_node(
                PLUGIN_NAME,
                plugin_inputs,
                list(node.output),
                name=name,
                domain=PLUGIN_NAMESPACE,
                stride=[int(v) for v in attrs.get("strides", [1, 1])],
                padding=pads[:2],
                dilation=[int(v) for v in attrs.get("dilations", [1, 1])],
                deformable_groups=int(attrs.get("offset_group", 1)),
                with_mask=1 if mask else 0,
                plugin_version=PLUGIN_VERSION,
                plugin_namespace=PLUGIN_NAMESPACE,
            )
        )
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    if not any(entry.domain == PLUGIN_NAMESPACE for entry in result.opset_import):
        result.opset_import.append(helper.make_opsetid(PLUGIN_NAMESPACE, 1))
    return result


def rewrite_dcn(model: onnx.ModelProto, dcn: str, source: str = "model") -> onnx.ModelProto | None:
    """``model`` with its DCN in the ``dcn`` lowering, or None when it has no DCN at all."""
    if dcn not in LOWERINGS:
        raise ModelError(f"{source}: unknown DCN lowering {dcn!r} (choose from: {', '.join(LOWERINGS)})")
    legacy = has_legacy_dcn(model)
    if legacy:
        model = legacy_to_standard(model)
    if not any(node.op_type == STANDARD_OP for node in model.graph.node):
        return model if legacy else None
    if dcn == "decomposed":
        return decompose_deform_conv(model, source)
    if dcn == "plugin":
        return deform_conv_to_plugin(model, source)
    return model
