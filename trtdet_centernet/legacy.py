"""Rewrite legacy CenterNet ONNX exports into the standard form this plugin runs.

Two legacy DCN encodings are recognised:

* the C++ tutorial / tensorRTIntegrate form: op ``Plugin`` with attributes
  ``name="DCNv2"`` and ``info=<json>`` (``stride``, ``padding``, ``dilation``,
  ``deformable_groups``; ints or pairs), inputs ``(x, offset_mask, weight, bias)`` where
  ``offset_mask`` is the raw ``conv_offset_mask`` output (the plugin splits and sigmoids it);
* the onnx-tensorrt fork form (CaoWGG/TensorRT-CenterNet): op ``DCNv2`` with inputs
  ``(x, offset, mask, weight, bias)`` (offset and mask already computed in the graph) and
  int attributes ``stride``, ``padding``, ``dilation``, ``deformable_group``.

Each becomes ONNX ``DeformConv`` (opset 19); ``offset_mask`` is split with ``Slice`` (the
first two thirds are upstream's ``cat(o1, o2)``) and ``Sigmoid``. The rest of the graph is
converted to opset 19 with ``onnx.version_converter``. When the graph has separate head
outputs named ``hm``, ``wh``, ``reg`` (as those tutorials export), they are fused into the
single ``output`` ``[B, H*W, 4 + 2C]`` = channel-last ``[reg, wh, hm, maxpool3x3(hm)]``;
a ``Sigmoid`` right before ``hm`` is skipped so ``hm`` is logits again, and any exported
pooled heatmap is replaced by upstream's 3x3 pool. The input is renamed ``images``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtdet.errors import ModelError
from trtdet_centernet.coco_names import class_names_for
from trtdet_centernet.dcn_nodes import attribute, is_fork_dcn, is_tutorial_dcn
from trtdet_centernet.export import INPUT_NAME, OPSET, OUTPUT_NAME, finalize

_PLACEHOLDER_DOMAIN = "trtdet.legacy"
_HEADS = ("hm", "wh", "reg")


def _pair(value: Any, default: int) -> list[int]:
    if value is None:
        return [default, default]
    if isinstance(value, (int, float)):
        return [int(value), int(value)]
    values = [int(v) for v in value]
    return values * 2 if len(values) == 1 else values[:2]


class _Rewriter:
    """One legacy model being rewritten; ``src`` names the file in every error."""

    def __init__(self, model: onnx.ModelProto, src: Path) -> None:
        self.model = model
        self.graph = model.graph
        self.src = src
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"legacy_{stem}_{self.counter}"

    def constant_shape(self, name: str) -> tuple[int, ...] | None:
        for init in self.graph.initializer:
            if init.name == name:
                return tuple(init.dims)
        for node in self.graph.node:
            if node.op_type == "Constant" and name in node.output:
                value = attribute(node, "value")
                return tuple(value.dims) if value is not None else None
        return None

    # -- DCN nodes -------------------------------------------------------------------------
    def geometry(self, node: onnx.NodeProto, *, plugin: bool, weight: str) -> dict[str, Any]:
        if plugin:
            raw = attribute(node, "info") or "{}"
            try:
                info = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise ModelError(
                    f"{self.src}: DCNv2 node {node.name!r} has an unreadable info attribute {raw!r}"
                ) from None
            groups = info.get("deformable_groups", info.get("deformable_group", 1))
        else:
            info = {key: attribute(node, key) for key in ("stride", "padding", "dilation")}
            groups = attribute(node, "deformable_group") or attribute(node, "deformable_groups") or 1
        shape = self.constant_shape(weight)
        if shape is None or len(shape) != 4:
            raise ModelError(
                f"{self.src}: DCNv2 node {node.name!r}: weight {weight!r} is not a constant 4-D tensor"
            )
        if isinstance(groups, (list, tuple)):
            groups = groups[0]
        return {
            "kernel_shape": [int(shape[2]), int(shape[3])],
            "strides": _pair(info.get("stride"), 1),
            "pads": _pair(info.get("padding"), 1) * 2,
            "dilations": _pair(info.get("dilation"), 1),
            "offset_group": int(groups),
        }

    def mark_placeholders(self) -> int:
        """Move DCN nodes to a private domain so the opset converter leaves them alone."""
        count = 0
        for node in self.graph.node:
            plugin = is_tutorial_dcn(node)
            if not (plugin or is_fork_dcn(node)):
                continue
            inputs = list(node.input)
            if plugin and len(inputs) not in (3, 4):
                raise ModelError(
                    f"{self.src}: Plugin DCNv2 node {node.name!r} has {len(inputs)} inputs, expected x, offset_mask, weight[, bias]"
                )
            if not plugin and len(inputs) not in (4, 5):
                raise ModelError(
                    f"{self.src}: DCNv2 node {node.name!r} has {len(inputs)} inputs, expected x, offset, mask, weight[, bias]"
                )
            weight = inputs[2] if plugin else inputs[3]
            geometry = self.geometry(node, plugin=plugin, weight=weight)
            del node.attribute[:]
            node.attribute.extend([helper.make_attribute("geometry", json.dumps(geometry))])
            node.op_type = "PluginDCNv2" if plugin else "ForkDCNv2"
            node.domain = _PLACEHOLDER_DOMAIN
            count += 1
        return count

    def expand_placeholders(self) -> None:
        new_nodes: list[onnx.NodeProto] = []
        for node in self.graph.node:
            if node.domain != _PLACEHOLDER_DOMAIN:
                new_nodes.append(node)
                continue
            geometry = json.loads(attribute(node, "geometry"))
            taps = geometry["kernel_shape"][0] * geometry["kernel_shape"][1]
            split = 2 * geometry["offset_group"] * taps
            inputs = list(node.input)
            base = node.name or self.fresh("dcn")
            if node.op_type == "PluginDCNv2":
                x, offset_mask, weight = inputs[:3]
                bias = inputs[3] if len(inputs) > 3 else ""
                offset, mask_logits, mask = (
                    self.fresh("offset"),
                    self.fresh("mask_logits"),
                    self.fresh("mask"),
                )
                starts, mid, ends, axes = (self.fresh(s) for s in ("starts", "mid", "ends", "axes"))
                for name, value in ((starts, 0), (mid, split), (ends, split + split // 2), (axes, 1)):
                    self.graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
                new_nodes += [
                    helper.make_node(
                        "Slice", [offset_mask, starts, mid, axes], [offset], name=f"{base}_offset"
                    ),
                    helper.make_node(
                        "Slice", [offset_mask, mid, ends, axes], [mask_logits], name=f"{base}_mask_slice"
                    ),
                    helper.make_node("Sigmoid", [mask_logits], [mask], name=f"{base}_mask"),
                ]
            else:
                x, offset, mask, weight = inputs[:4]
                bias = inputs[4] if len(inputs) > 4 else ""
            new_nodes.append(
                helper.make_node(
                    "DeformConv",
                    [x, weight, offset, bias, mask],
                    list(node.output),
                    name=base,
                    **geometry,
                )
            )
        del self.graph.node[:]
        self.graph.node.extend(new_nodes)
        keep = [o for o in self.model.opset_import if o.domain != _PLACEHOLDER_DOMAIN]
        del self.model.opset_import[:]
        self.model.opset_import.extend(keep)

    # -- inputs, outputs -------------------------------------------------------------------
    def rename(self, old: str, new: str) -> None:
        if old == new:
            return
        for node in self.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        for value in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            if value.name == old:
                value.name = new

    def fix_input(self) -> None:
        initializers = {init.name for init in self.graph.initializer}
        real = [i for i in self.graph.input if i.name not in initializers]
        if len(real) != 1:
            raise ModelError(f"{self.src}: expected one image input, got {[i.name for i in real]}")
        keep = [i for i in self.graph.input if i.name not in initializers]  # drop IR<4 initializer inputs
        del self.graph.input[:]
        self.graph.input.extend(keep)
        self.rename(real[0].name, INPUT_NAME)

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.graph.node if name in n.output), None)

    def fuse_heads(self) -> None:
        outputs = {o.name: o for o in self.graph.output}
        if len(outputs) == 1:
            self.rename(next(iter(outputs)), OUTPUT_NAME)
            return
        missing = [h for h in _HEADS if h not in outputs]
        if missing:
            raise ModelError(
                f"{self.src}: cannot find CenterNet heads: outputs are {sorted(outputs)}; expected one fused "
                f"output or outputs named hm, wh, reg"
            )
        hm = "hm"
        node = self.producer(hm)
        if node is not None and node.op_type == "Sigmoid":
            hm = node.input[0]  # decode applies the sigmoid itself
        pool, fused, flat, shape = (self.fresh(s) for s in ("pool_hm", "fused", "flat", "shape"))
        self.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), shape))
        self.graph.node.extend(
            [
                helper.make_node(
                    "MaxPool", [hm], [pool], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]
                ),
                helper.make_node("Concat", ["reg", "wh", hm, pool], [fused], axis=1),
                helper.make_node("Reshape", [fused, shape], [flat]),
                helper.make_node("Transpose", [flat], [OUTPUT_NAME], perm=[0, 2, 1]),
            ]
        )
        del self.graph.output[:]
        self.graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, None))

    def prune(self) -> None:
        """Drop nodes and initializers no output depends on (old heads, pooled maps)."""
        needed = {o.name for o in self.graph.output}
        kept = []
        for node in reversed(self.graph.node):
            if any(o in needed for o in node.output):
                kept.append(node)
                needed.update(i for i in node.input if i)
        del self.graph.node[:]
        self.graph.node.extend(reversed(kept))
        inits = [i for i in self.graph.initializer if i.name in needed]
        del self.graph.initializer[:]
        self.graph.initializer.extend(inits)
        del self.graph.value_info[:]


def _settle_output(model: onnx.ModelProto, src: Path) -> int:
    """Give ``output`` its inferred ``[B, N, 4 + 2C]`` type; return C."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = next(o for o in inferred.graph.output if o.name == OUTPUT_NAME)
    if not out.type.tensor_type.HasField("shape"):
        inferred_value = next((v for v in inferred.graph.value_info if v.name == OUTPUT_NAME), None)
        out = inferred_value if inferred_value is not None else out
    dims = out.type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[2].HasField("dim_value"):
        raise ModelError(f"{src}: the converted output has no static [B, N, C] shape; not a CenterNet head")
    channels = dims[2].dim_value
    if channels < 6 or channels % 2:
        raise ModelError(f"{src}: the converted output has {channels} channels, expected 4 + 2 x num_classes")
    target = next(o for o in model.graph.output if o.name == OUTPUT_NAME)
    target.type.CopyFrom(out.type)
    return (channels - 4) // 2


def convert_legacy_onnx(src: Path | str, dst: Path | str) -> Path:
    """Rewrite the legacy CenterNet ONNX ``src`` (DCNv2 plugin ops) to the standard ``dst``; return ``dst``."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ModelError(f"{src}: no such ONNX file")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{src}: not a readable ONNX file ({type(exc).__name__})") from None
    rewriter = _Rewriter(model, src)
    found = rewriter.mark_placeholders()
    if not found and len(model.graph.output) == 1:
        raise ModelError(
            f"{src}: no legacy DCNv2 nodes (op 'Plugin' name=DCNv2, or op 'DCNv2') and no separate heads: "
            "nothing to convert"
        )
    default = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if default is None or default.version < OPSET:
        if found:
            model.opset_import.append(helper.make_opsetid(_PLACEHOLDER_DOMAIN, 1))
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{src}: could not convert the graph to opset {OPSET} ({first[:200]})") from None
        rewriter = _Rewriter(model, src)
    rewriter.expand_placeholders()
    rewriter.fix_input()
    rewriter.fuse_heads()
    rewriter.prune()
    num_classes = _settle_output(model, src)
    try:
        finalize(model, class_names_for(num_classes))
    except onnx.checker.ValidationError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ModelError(f"{src}: the converted graph is not valid ONNX ({first[:200]})") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dst.parent, suffix=".onnx", delete=False) as tmp:
        staged = Path(tmp.name)
    try:
        onnx.save(model, str(staged))
        os.replace(staged, dst)
    finally:
        staged.unlink(missing_ok=True)
    return dst
