"""Rewrite ONNX ``DeformConv`` into standard ops, for TensorRTs without a DeformConv importer.

Per DeformConv node (inputs X [N,C,H,W], W [Co,C/group,kh,kw], offset [N,2*G*K,Ho,Wo],
optional B [Co] and mask [N,G*K,Ho,Wo]; K = kh*kw taps, G offset groups):

1. sampling positions ``y = ho*sh - ph + i*dh + dy``, ``x = wo*sw - pw + j*dw + dx`` for tap
   ``k = i*kw + j`` (offset channel ``g*2K + 2k`` is dy, ``+1`` is dx);
2. ``GridSample`` (bilinear, zeros padding, ``align_corners=0`` so pixel ``x`` is
   ``(2x+1)/W - 1``) of X regrouped as [N*G, C/G, H, W] at those positions, which reads
   out-of-image corners as zero exactly like DeformConv's bilinear sampling;
3. times the mask; the result regrouped as columns [N, C*K, Ho, Wo] (channel ``c*K + k``);
4. a 1x1 ``Conv`` (groups = ``group``) with W reshaped to [Co, C/group*K, 1, 1], plus B.

Shapes other than C, K and G stay dynamic (computed with Shape/Slice/Concat), so dynamic
batch works. The result runs in ONNX Runtime too, which is how it is tested.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtdet.errors import ModelError

#: GridSample was added in opset 16; opset 20 renamed its mode "bilinear" to "linear".
MIN_OPSET = 16


class _Emitter:
    """Creates uniquely named nodes and constant initializers for one rewritten node."""

    def __init__(self, graph: onnx.GraphProto, prefix: str) -> None:
        self.graph = graph
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: object) -> str:
        output = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _static_dims(model: onnx.ModelProto, name: str) -> list[int] | None:
    for init in model.graph.initializer:
        if init.name == name:
            return list(init.dims)
    for info in [*model.graph.value_info, *model.graph.input]:
        if info.name == name:
            dims = info.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return None


def _lower(model: onnx.ModelProto, node: onnx.NodeProto, emit: _Emitter, source: str) -> None:
    inputs = list(node.input) + [""] * (5 - len(node.input))
    x, w, offset, bias, mask = inputs[:5]
    attrs = _attrs(node)
    w_dims = _static_dims(model, w)
    group = int(attrs.get("group", 1))
    offset_groups = int(attrs.get("offset_group", 1))
    kernel = list(attrs.get("kernel_shape", w_dims[2:] if w_dims and len(w_dims) == 4 else []))
    if len(kernel) != 2 or min(kernel) <= 0:
        raise ModelError(
            f"{source}: DeformConv node {node.name!r}: kernel shape unknown (no kernel_shape, W not static)"
        )
    kh, kw = (int(k) for k in kernel)
    taps = kh * kw
    channels = None
    if w_dims and len(w_dims) == 4 and w_dims[1] > 0:
        channels = w_dims[1] * group
    else:
        x_dims = _static_dims(model, x)
        if x_dims and len(x_dims) == 4 and x_dims[1] > 0:
            channels = x_dims[1]
    if channels is None:
        raise ModelError(
            f"{source}: DeformConv node {node.name!r}: input channel count unknown (W not static)"
        )
    if channels % offset_groups:
        raise ModelError(
            f"{source}: DeformConv node {node.name!r}: {channels} channels not divisible by offset_group"
        )
    sh, sw = (int(v) for v in attrs.get("strides", [1, 1]))
    dh, dw = (int(v) for v in attrs.get("dilations", [1, 1]))
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    ph, pw = pads[0], pads[1]
    mode = "linear" if _opset(model) >= 20 else "bilinear"
    i64 = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    f32 = lambda values: np.asarray(values, dtype=np.float32)  # noqa: E731

    # Dynamic sizes: H, W of X and Ho, Wo of the offsets (1-D int64 tensors).
    x_shape = emit.op("Shape", [x], "x_shape")
    hw = emit.op("Slice", [x_shape, emit.const("s2", i64([2])), emit.const("s4", i64([4]))], "hw")
    off_shape = emit.op("Shape", [offset], "offset_shape")
    out_hw = emit.op("Slice", [off_shape, emit.const("s2", i64([2])), emit.const("s4", i64([4]))], "out_hw")
    out_h = emit.op("Slice", [off_shape, emit.const("s2", i64([2])), emit.const("s3", i64([3]))], "out_h")
    out_w = emit.op("Slice", [off_shape, emit.const("s3", i64([3])), emit.const("s4", i64([4]))], "out_w")

    # Offsets as [N*G, K, 2, Ho, Wo]; dy, dx as [N*G, K, Ho, Wo].
    shape5 = emit.op("Concat", [emit.const("ng_k_2", i64([-1, taps, 2])), out_hw], "offset5_shape", axis=0)
    offset5 = emit.op("Reshape", [offset, shape5], "offset5")
    dy = emit.op("Gather", [offset5, emit.const("zero", i64(0))], "dy", axis=2)
    dx = emit.op("Gather", [offset5, emit.const("one", i64(1))], "dx", axis=2)

    # Base positions: output row/column times stride, plus each tap's dilated, padded origin.
    def axis_positions(length: str, stride: int, hint: str, shape: list[int]) -> str:
        scalar = emit.op("Squeeze", [length, emit.const("axis0", i64([0]))], f"{hint}_len")
        index = emit.op(
            "Range", [emit.const("r0", i64(0)), scalar, emit.const("r1", i64(1))], f"{hint}_range"
        )
        index = emit.op("Reshape", [index, emit.const(f"{hint}_shape", i64(shape))], f"{hint}_index")
        index = emit.op("CastLike", [index, dy], f"{hint}_float")
        return emit.op(
            "Mul", [index, emit.op("CastLike", [emit.const("stride", f32(stride)), dy])], f"{hint}_pos"
        )

    rows = axis_positions(out_h, sh, "row", [1, 1, -1, 1])
    cols = axis_positions(out_w, sw, "col", [1, 1, 1, -1])
    tap_y = f32([i * dh - ph for i in range(kh) for _ in range(kw)]).reshape(1, taps, 1, 1)
    tap_x = f32([j * dw - pw for _ in range(kh) for j in range(kw)]).reshape(1, taps, 1, 1)
    y = emit.op(
        "Add", [emit.op("Add", [dy, emit.op("CastLike", [emit.const("tap_y", tap_y), dy])]), rows], "y"
    )
    x_pos = emit.op(
        "Add", [emit.op("Add", [dx, emit.op("CastLike", [emit.const("tap_x", tap_x), dx])]), cols], "x"
    )

    # Normalised grid for align_corners=0: g = (2p + 1) / size - 1.
    hw_float = emit.op("CastLike", [hw, dy], "hw_float")
    height = emit.op("Gather", [hw_float, emit.const("zero", i64(0))], "height")
    width = emit.op("Gather", [hw_float, emit.const("one", i64(1))], "width")
    two = emit.op("CastLike", [emit.const("two", f32(2.0)), dy])
    one = emit.op("CastLike", [emit.const("one_f", f32(1.0)), dy])

    def normalise(pos: str, size: str, hint: str) -> str:
        scaled = emit.op("Add", [emit.op("Mul", [pos, two]), one])
        return emit.op("Sub", [emit.op("Div", [scaled, size]), one], hint)

    gy = emit.op("Unsqueeze", [normalise(y, height, "gy"), emit.const("last", i64([-1]))], "gy5")
    gx = emit.op("Unsqueeze", [normalise(x_pos, width, "gx"), emit.const("last", i64([-1]))], "gx5")
    grid5 = emit.op("Concat", [gx, gy], "grid5", axis=-1)  # GridSample wants (x, y)
    grid_shape = emit.op(
        "Concat", [emit.const("ng_m1", i64([0, -1])), out_w, emit.const("two_i", i64([2]))], axis=0
    )
    grid = emit.op("Reshape", [grid5, grid_shape], "grid")  # [N*G, K*Ho, Wo, 2]

    grouped = emit.op(
        "Reshape", [x, emit.const("x_groups", i64([-1, channels // offset_groups, 0, 0]))], "x_groups"
    )
    sampled = emit.op(
        "GridSample", [grouped, grid], "sampled", mode=mode, padding_mode="zeros", align_corners=0
    )  # [N*G, C/G, K*Ho, Wo]
    if mask:
        k_out_h = emit.op("Mul", [out_h, emit.const("taps", i64([taps]))], "k_out_h")
        mask_shape = emit.op(
            "Concat", [emit.const("ng_1", i64([-1, 1])), k_out_h, out_w], "mask_shape", axis=0
        )
        sampled = emit.op("Mul", [sampled, emit.op("Reshape", [mask, mask_shape], "mask4")], "masked")
    columns_shape = emit.op(
        "Concat", [emit.const("n_ck", i64([-1, channels * taps])), out_hw], "columns_shape", axis=0
    )
    columns = emit.op("Reshape", [sampled, columns_shape], "columns")  # [N, C*K, Ho, Wo], channel c*K + k
    out_channels_shape = emit.const("w_1x1", i64([0, -1, 1, 1]))
    weight = emit.op("Reshape", [w, out_channels_shape], "weight_1x1")
    conv_inputs = [columns, weight] + ([bias] if bias else [])
    emit.nodes.append(
        helper.make_node(
            "Conv", conv_inputs, [node.output[0]], name=emit.name("conv"), group=group, kernel_shape=[1, 1]
        )
    )


def decompose_deform_conv(model: onnx.ModelProto, source: str = "model") -> onnx.ModelProto:
    """A copy of ``model`` with every ``DeformConv`` replaced by standard ops (numerically equal)."""
    if not any(node.op_type == "DeformConv" for node in model.graph.node):
        return model
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise ModelError(
            f"{source}: opset {opset} has no GridSample (needs >= {MIN_OPSET}) to decompose DeformConv"
        )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(result)
    except Exception:  # shape inference is a help for channel counts, not a requirement
        inferred = result
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(result.graph.node):
        if node.op_type != "DeformConv":
            nodes.append(node)
            continue
        emit = _Emitter(result.graph, node.name or f"DeformConv_{index}")
        _lower(inferred, node, emit, source)
        nodes.extend(emit.nodes)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    return result
