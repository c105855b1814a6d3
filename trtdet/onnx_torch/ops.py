"""The op table: ONNX node -> torch callable converters, and shape arithmetic on Python values.

Converters read attributes and constant inputs at conversion and return a callable taking one
run-time value per ONNX input (None for absent or constant-folded ones). Everything the
callable does is plain torch on tensors and Python on ints, so ``torch.export`` traces it with
a symbolic batch. Spatial sizes are static at conversion, so padding, pooling windows and
resize indices are worked out here, once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trtdet.lazy import lazy_import
from trtdet.onnx_torch.graph import CONST, SHAPE, Converter, OnnxNode, ShapeOp, Unsupported

#: ONNX's helpers (for dtype tables), imported on first use.
helper = lazy_import("onnx.helper")

CONVERTERS: dict[str, Converter] = {}
SHAPE_OPS: dict[str, ShapeOp] = {}


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    def add(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn

    return add


def creates_tensor(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a run-time callable that makes a tensor from sizes alone (``arange``, ``full``): it
    is called with ``device=`` the device of the module's first input (``meta`` while the graph
    is probed), so what it makes meets the network's other tensors on their device."""
    fn.creates_tensor = True  # type: ignore[attr-defined]
    return fn


def shape_op(*op_types: str) -> Callable[[ShapeOp], ShapeOp]:
    def add(fn: ShapeOp) -> ShapeOp:
        for op_type in op_types:
            SHAPE_OPS[op_type] = fn
        return fn

    return add


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _onnx_torch_dtype(to: int) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(to))).dtype


def _axes(node: OnnxNode, index: int, default: list[int] | None = None) -> list[int] | None:
    """``axes`` from the attribute (older opsets) or from input ``index`` (newer ones)."""
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    if node.has(index):
        axes = node.ints(index)
        if axes is None:
            raise Unsupported("axes computed at run time are not supported")
        return axes
    return default


# -- elementwise ------------------------------------------------------------------------------

def _int_div(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    if a.dtype.is_floating_point or (isinstance(b, torch.Tensor) and b.dtype.is_floating_point):
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


_BINARY: dict[str, Callable[..., Any]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _int_div, "Pow": torch.pow,
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}

_UNARY: dict[str, Callable[..., Any]] = {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
    "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Reciprocal": torch.reciprocal,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Erf": torch.erf, "Not": torch.logical_not,
    "Sin": torch.sin, "Cos": torch.cos, "Sign": torch.sign, "Softplus": F.softplus, "Softsign": F.softsign,
    "Mish": F.mish, "IsNaN": torch.isnan,
    "Identity": lambda x: x,
}


@converter(*_BINARY)
def _binary(node: OnnxNode) -> Callable[..., Any]:
    fn = _BINARY[node.op_type]
    if node.op_type == "Div" and node.kind(0) != CONST:
        divisor = _integer_scalar(node, 1)
        if divisor is not None:
            # an integer division by a constant: the divisor as a Python int, so torch.export records
            # div.Scalar_mode and Inductor keeps the quotient integral (with the divisor as a 0-d
            # tensor, torch 2.11's Inductor computed YOLO26's TopK index // classes in float on
            # CUDA, and the gather it feeds failed to compile: pointer + float32)
            return lambda a, _b=None: _int_div(a, divisor)

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fn(a, b)

    return run


def _integer_scalar(node: OnnxNode, index: int) -> int | None:
    """Input ``index`` as a Python int when it is a constant integer scalar (0-d; read at conversion)."""
    value = node.value(index)
    if value is None or value.kind != CONST or value.array.ndim != 0 or value.array.dtype.kind not in "iu":
        return None
    return int(node.static(index))


@converter(*_UNARY)
def _unary(node: OnnxNode) -> Callable[..., Any]:
    fn = _UNARY[node.op_type]

    def run(x: torch.Tensor) -> torch.Tensor:
        return fn(x)

    return run


@converter("Mod")
def _mod(node: OnnxNode) -> Callable[..., Any]:
    fmod = node.attr("fmod", 0)
    return lambda a, b: torch.fmod(a, b) if fmod else torch.remainder(a, b)


@converter("Max", "Min", "Sum", "Mean")
def _variadic(node: OnnxNode) -> Callable[..., Any]:
    op = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add, "Mean": torch.add}[node.op_type]
    count = len(node.inputs)
    mean = node.op_type == "Mean"

    def run(*xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = op(out, x)
        return out / count if mean else out

    return run


@converter("LeakyRelu")
def _leaky_relu(node: OnnxNode) -> Callable[..., Any]:
    alpha = float(node.attr("alpha", 0.01))
    return lambda x: F.leaky_relu(x, alpha)


@converter("Elu", "Celu", "Selu", "ThresholdedRelu", "HardSigmoid", "HardSwish", "Gelu", "PRelu")
def _activation(node: OnnxNode) -> Callable[..., Any]:
    op = node.op_type
    if op == "Elu":
        alpha = float(node.attr("alpha", 1.0))
        return lambda x: F.elu(x, alpha)
    if op == "Celu":
        alpha = float(node.attr("alpha", 1.0))
        return lambda x: F.celu(x, alpha)
    if op == "Selu":
        alpha, gamma = float(node.attr("alpha", 1.67326319217681884765625)), float(node.attr("gamma", 1.05070102214813232421875))
        return lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))
    if op == "ThresholdedRelu":
        alpha = float(node.attr("alpha", 1.0))
        return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))
    if op == "HardSigmoid":
        alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
        return lambda x: torch.clamp(alpha * x + beta, 0, 1)
    if op == "HardSwish":
        return F.hardswish
    if op == "Gelu":
        approximate = node.attr("approximate", "none")
        return lambda x: F.gelu(x, approximate=approximate)
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@converter("Clip")
def _clip(node: OnnxNode) -> Callable[..., Any]:
    if node.opset < 11:
        low, high = node.attr("min"), node.attr("max")
        return lambda x: torch.clamp(x, low, high)
    low = node.static(1) if node.has(1) else None
    high = node.static(2) if node.has(2) else None
    # python values of the bounds' own type: float bounds on an int64 tensor would promote it to float
    low_v = None if low is None else np.asarray(low).item()
    high_v = None if high is None else np.asarray(high).item()
    dynamic_low, dynamic_high = node.has(1) and low is None, node.has(2) and high is None

    def run(x: torch.Tensor, lo: Any = None, hi: Any = None) -> torch.Tensor:
        if dynamic_low:
            x = torch.maximum(x, lo)
        if dynamic_high:
            x = torch.minimum(x, hi)
        if low_v is not None or high_v is not None:
            x = torch.clamp(x, low_v, high_v)
        return x

    return run


@converter("Where")
def _where(node: OnnxNode) -> Callable[..., Any]:
    return lambda c, a, b: torch.where(c, a, b)


@converter("Cast", "CastLike")
def _cast(node: OnnxNode) -> Callable[..., Any]:
    if node.op_type == "CastLike":
        target = node.dtype(1)
        node.static(1)
    else:
        target = _onnx_torch_dtype(node.attr("to"))
    if target.is_floating_point:
        # Floating casts follow the module's precision (``.to(dtype)``): a float->float cast is
        # the identity, other types become float32 unless the tensor already floats.
        def run(x: torch.Tensor, _like: Any = None) -> torch.Tensor:
            return x if x.is_floating_point() else x.to(torch.float32)

        return run
    return lambda x, _like=None: x.to(target)


# -- layout -----------------------------------------------------------------------------------

@converter("Reshape")
def _reshape(node: OnnxNode) -> Callable[..., Any]:
    allowzero = node.attr("allowzero", 0)
    target = node.ints(1)
    x_shape = node.shape(0)
    if target is None:
        def run_dynamic(x: torch.Tensor, shape: tuple) -> torch.Tensor:
            dims = [x.shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
            return torch.reshape(x, dims)

        return run_dynamic
    copy = [i for i, d in enumerate(target) if d == 0 and not allowzero]
    batch_scale = None
    batch = node.static_batch
    # A static-batch export names its batch size in Reshape targets: keep them batch-generic.
    if (batch and x_shape and x_shape[0] is None and target and target[0] > 0 and target[0] % batch == 0
            and 0 not in copy):
        batch_scale = target[0] // batch
    if not copy and batch_scale is None:
        fixed = tuple(target)
        return lambda x, _s=None: torch.reshape(x, fixed)

    def run(x: torch.Tensor, _s: Any = None) -> torch.Tensor:
        dims = list(target)
        for i in copy:
            dims[i] = x.shape[i]
        if batch_scale is not None:
            dims[0] = x.shape[0] * batch_scale if batch_scale != 1 else x.shape[0]
        return torch.reshape(x, dims)

    return run


@converter("Flatten")
def _flatten(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axis = _axis(node.attr("axis", 1), rank)
    shape = node.shape(0)
    inner = math.prod(shape[axis:]) if None not in shape[axis:] else None
    if axis == 0:
        return lambda x: torch.reshape(x, (1, -1))
    if inner is not None:
        return lambda x: torch.reshape(x, (-1, inner))
    return lambda x: torch.flatten(torch.flatten(x, axis), 0, axis - 1) if axis > 1 else torch.flatten(x, 1)


@converter("Transpose")
def _transpose(node: OnnxNode) -> Callable[..., Any]:
    perm = node.attr("perm")
    if perm is None:
        perm = list(range(node.rank(0)))[::-1]
    perm = tuple(perm)
    return lambda x: x.permute(perm)


@converter("Squeeze")
def _squeeze(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axes = _axes(node, 1)
    if axes is None:
        axes = [i for i, d in enumerate(node.shape(0)) if d == 1]
    axes = tuple(sorted(_axis(a, rank) for a in axes))
    return lambda x, _a=None: torch.squeeze(x, axes) if axes else x


@converter("Unsqueeze")
def _unsqueeze(node: OnnxNode) -> Callable[..., Any]:
    axes = _axes(node, 1)
    out_rank = node.rank(0) + len(axes)
    axes = sorted(_axis(a, out_rank) for a in axes)

    def run(x: torch.Tensor, _a: Any = None) -> torch.Tensor:
        for a in axes:
            x = torch.unsqueeze(x, a)
        return x

    return run


@converter("Concat")
def _concat(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axis = _axis(node.attr("axis"), rank)
    shapes = [node.shape(i) for i in range(len(node.inputs))]
    batch = node.static_batch
    dynamic = [i for i, s in enumerate(shapes) if s and s[0] is None]
    # A static-batch export may concatenate a folded constant of its batch with batched data.
    widen = [i for i, s in enumerate(shapes)
             if batch == 1 and axis != 0 and dynamic and s and s[0] == 1 and node.kind(i) == CONST]
    if not widen:
        return lambda *xs: torch.cat(xs, axis)
    ref = dynamic[0]

    def run(*xs: torch.Tensor) -> torch.Tensor:
        n = xs[ref].shape[0]
        return torch.cat([x.expand(n, *x.shape[1:]) if i in widen else x for i, x in enumerate(xs)], axis)

    return run


@converter("Split")
def _split(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axis = _axis(node.attr("axis", 0), rank)
    size = node.shape(0)[axis]
    count = len(node.outputs)
    if "split" in node.attrs:
        sizes = list(node.attrs["split"])
    elif node.has(1):
        sizes = node.ints(1)
        if sizes is None:
            raise Unsupported("split sizes computed at run time are not supported")
    else:
        if size is None:
            raise Unsupported("an equal split along the batch axis is not supported")
        parts = node.attr("num_outputs", count)
        chunk = -(-size // parts)
        sizes = [chunk] * (size // chunk) + ([size % chunk] if size % chunk else [])
    sizes = [int(s) for s in sizes]
    return lambda x, _s=None: torch.split(x, sizes, axis)


def _slice_axis(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice semantics for one axis of known size: python-style (start, stop, step) >= 0."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, end, step


@converter("Slice")
def _slice(node: OnnxNode) -> Callable[..., Any]:
    shape = node.shape(0)
    rank = len(shape)
    if node.opset < 10:
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes = list(node.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = node.ints(1), node.ints(2)
        axes = node.ints(3) if node.has(3) else None
        steps = node.ints(4) if node.has(4) else None
        if starts is None or ends is None or (node.has(3) and axes is None) or (node.has(4) and steps is None):
            raise Unsupported("slice bounds computed at run time are not supported")
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
    index: list[Any] = [slice(None)] * rank
    flips: list[int] = []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = _axis(axis, rank)
        dim = shape[axis]
        if step == 0:
            raise Unsupported("a slice step of 0")
        if dim is None:
            if step < 0:
                raise Unsupported("a negative step along the batch axis is not supported")
            index[axis] = slice(start if start >= 0 else None if start <= -(2 ** 62) else start,
                                None if end >= 2 ** 62 else end, step)
            continue
        s, e, st = _slice_axis(start, end, step, dim)
        if st > 0:
            index[axis] = slice(s, max(e, s), st)
        else:
            count = max(0, -(-(s - e) // -st))
            if count == 0:
                index[axis] = slice(0, 0)
                continue
            flips.append(axis)
            first = dim - 1 - s  # position of ``s`` once the axis is flipped
            index[axis] = slice(first, first + (count - 1) * -st + 1, -st)
    key = tuple(index)
    flip_axes = tuple(flips)
    if flip_axes:
        return lambda x, *_: torch.flip(x, flip_axes)[key]
    return lambda x, *_: x[key]


@converter("Gather")
def _gather(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axis = _axis(node.attr("axis", 0), rank)
    dim = node.shape(0)[axis]
    indices = node.static(1)
    if indices is not None and indices.ndim == 0:
        i = int(indices)
        i = i + dim if (i < 0 and dim is not None) else i
        return lambda x, _i=None: torch.select(x, axis, i)
    if indices is not None:
        flat = indices.reshape(-1).astype(np.int64)
        if dim is not None:
            flat = np.where(flat < 0, flat + dim, flat)
        out_shape = indices.shape
        if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)):
            start, length = int(flat[0]), int(flat.size)

            def run_range(x: torch.Tensor, _i: Any = None) -> torch.Tensor:
                out = torch.narrow(x, axis, start, length)
                return out if len(out_shape) == 1 else torch.reshape(
                    out, (*x.shape[:axis], *out_shape, *x.shape[axis + 1:]))

            return run_range
        node.baked.discard(1)  # index tensors travel as a buffer (follow .to(device))

    def run(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        out = torch.index_select(x, axis, idx.reshape(-1))
        return torch.reshape(out, (*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]))

    return run


@converter("GatherElements")
def _gather_elements(node: OnnxNode) -> Callable[..., Any]:
    axis = _axis(node.attr("axis", 0), node.rank(0))
    return lambda x, idx: torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))


def _expand_shape(x_shape: tuple, target: tuple) -> tuple:
    rank = max(len(x_shape), len(target))
    x_shape = (1,) * (rank - len(x_shape)) + tuple(x_shape)
    target = (1,) * (rank - len(target)) + tuple(target)
    return tuple(a if (isinstance(b, int) and b == 1) else b for a, b in zip(x_shape, target, strict=True))


@converter("Expand")
def _expand(node: OnnxNode) -> Callable[..., Any]:
    target = node.ints(1)

    def run(x: torch.Tensor, shape: Any = None) -> torch.Tensor:
        out = _expand_shape(tuple(x.shape), tuple(target if shape is None else shape))
        if len(out) > x.dim():
            x = torch.reshape(x, (1,) * (len(out) - x.dim()) + tuple(x.shape))
        return x.expand(out)

    return run


@converter("Tile")
def _tile(node: OnnxNode) -> Callable[..., Any]:
    repeats = node.ints(1)
    return lambda x, r=None: x.repeat(tuple(repeats if r is None else r))


@converter("ConstantOfShape")
def _constant_of_shape(node: OnnxNode) -> Callable[..., Any]:
    value = node.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    dtype = torch.from_numpy(np.zeros(0, fill.dtype)).dtype
    dtype = torch.float32 if dtype.is_floating_point else dtype
    scalar = fill[0].item()
    shape = node.ints(0)

    def run(s: Any = None, *, device: torch.device) -> torch.Tensor:
        return torch.full(tuple(shape if s is None else s), scalar, dtype=dtype, device=device)

    return creates_tensor(run)


@converter("Range")
def _range(node: OnnxNode) -> Callable[..., Any]:
    dtype = node.dtype(0)
    dtype = torch.float32 if dtype.is_floating_point else dtype
    fixed: list[Any] = []
    for i in range(3):
        array = node.static(i)
        if array is None and node.kind(i) != SHAPE:
            raise Unsupported("range bounds computed from tensor data are not supported")
        if array is None:
            node.shape_args.add(i)
        fixed.append(None if array is None else array.item())

    def run(*args: Any, device: torch.device) -> torch.Tensor:
        start, limit, delta = (f if f is not None else a for f, a in zip(fixed, args, strict=True))
        return torch.arange(start, limit, delta, dtype=dtype, device=device)

    return creates_tensor(run)


@converter("Shape")
def _shape_of_const(node: OnnxNode) -> Callable[..., Any]:
    start, end = node.attr("start", 0), node.attr("end", None)
    return lambda x: torch.tensor(tuple(x.shape)[start:end], dtype=torch.int64)


@converter("Size")
def _size_of_const(node: OnnxNode) -> Callable[..., Any]:
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@converter("Pad")
def _pad(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    mode = node.attr("mode", "constant")
    if node.opset < 11:
        pads, value, axes = list(node.attr("pads")), float(node.attr("value", 0.0)), None
    else:
        pads = node.ints(1)
        if pads is None:
            raise Unsupported("pads computed at run time are not supported")
        constant = node.static(2) if node.has(2) else None
        if node.has(2) and constant is None:
            raise Unsupported("a run-time pad value is not supported")
        value = float(constant) if constant is not None else 0.0
        axes = node.ints(3) if node.has(3) else None
    axes = [_axis(a, rank) for a in axes] if axes is not None else list(range(rank))
    n = len(axes)
    begin, end = dict(zip(axes, pads[:n], strict=True)), dict(zip(axes, pads[n:], strict=True))
    torch_pads: list[int] = []
    for axis in reversed(range(rank)):
        torch_pads += [begin.get(axis, 0), end.get(axis, 0)]
    while len(torch_pads) > 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    if mode == "constant":
        return lambda x, *_: F.pad(x, torch_pads, mode="constant", value=value)
    return lambda x, *_: F.pad(x, torch_pads, mode=mode)


# -- reductions, softmax --------------------------------------------------------------------

@converter("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare")
def _reduce(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    keep = bool(node.attr("keepdims", 1))
    axes = _axes(node, 1)
    if axes is None or not axes:
        if node.attr("noop_with_empty_axes", 0):
            return lambda x, _a=None: x
        axes = list(range(rank))
    dims = tuple(sorted(_axis(a, rank) for a in axes))
    op = node.op_type

    def run(x: torch.Tensor, _a: Any = None) -> torch.Tensor:
        if op == "ReduceMean":
            return torch.mean(x, dims, keepdim=keep)
        if op == "ReduceSum":
            return torch.sum(x, dims, keepdim=keep)
        if op == "ReduceSumSquare":
            return torch.sum(x * x, dims, keepdim=keep)
        if op == "ReduceL2":
            return torch.sqrt(torch.sum(x * x, dims, keepdim=keep))
        if op == "ReduceMax":
            return torch.amax(x, dims, keepdim=keep)
        if op == "ReduceMin":
            return torch.amin(x, dims, keepdim=keep)
        for d in reversed(dims):
            x = torch.prod(x, d, keepdim=keep)
        return x

    return run


@converter("ArgMax", "ArgMin")
def _argmax(node: OnnxNode) -> Callable[..., Any]:
    axis = _axis(node.attr("axis", 0), node.rank(0))
    keep = bool(node.attr("keepdims", 1))
    if node.attr("select_last_index", 0):
        raise Unsupported("select_last_index=1 is not supported")
    fn = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    return lambda x: fn(x, axis, keepdim=keep)


@converter("TopK")
def _topk(node: OnnxNode) -> Callable[..., Any]:
    """Values and int64 indices of the k largest (or smallest) along ``axis``, sorted, as ONNX gives them."""
    axis = _axis(node.attr("axis", -1), node.rank(0))
    largest = bool(node.attr("largest", 1))
    k = node.ints(1)

    def run(x: torch.Tensor, runtime_k: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        count = int(k[0]) if k is not None else int(runtime_k[0])
        return torch.topk(x, count, dim=axis, largest=largest, sorted=True)

    return run


#: ONNX GridSample modes (opset 16 and 20 names) -> torch's.
_GRID_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest", "bicubic": "bicubic", "cubic": "bicubic"}


@converter("GridSample")
def _grid_sample(node: OnnxNode) -> Callable[..., Any]:
    mode = node.attr("mode", b"bilinear")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    padding = node.attr("padding_mode", b"zeros")
    padding = padding.decode() if isinstance(padding, bytes) else str(padding)
    if mode not in _GRID_MODES or node.rank(0) != 4:
        raise Unsupported(f"GridSample mode {mode!r} on rank {node.rank(0)} input is not supported")
    align = bool(node.attr("align_corners", 0))
    torch_mode = _GRID_MODES[mode]
    return lambda x, grid: F.grid_sample(x, grid, mode=torch_mode, padding_mode=padding, align_corners=align)


@converter("Softmax", "LogSoftmax")
def _softmax(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    fn = torch.softmax if node.op_type == "Softmax" else torch.log_softmax
    if node.opset >= 13:
        axis = _axis(node.attr("axis", -1), rank)
        return lambda x: fn(x, axis)
    axis = _axis(node.attr("axis", 1), rank)
    if axis == rank - 1:
        return lambda x: fn(x, axis)
    # Before opset 13 the input is coerced to 2-D at ``axis``: softmax over all trailing dims.
    return lambda x: torch.reshape(fn(torch.flatten(x, axis), axis), x.shape)


# -- linear algebra -------------------------------------------------------------------------

@converter("MatMul")
def _matmul(node: OnnxNode) -> Callable[..., Any]:
    return lambda a, b: torch.matmul(a, b)


@converter("Gemm")
def _gemm(node: OnnxNode) -> Callable[..., Any]:
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = node.attr("transA", 0), node.attr("transB", 0)

    def run(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.matmul(a.t() if trans_a else a, b.t() if trans_b else b)
        if alpha != 1.0:
            out = out * alpha
        if c is not None:
            out = out + (c * beta if beta != 1.0 else c)
        return out

    return run


# -- convolution, pooling, normalisation ----------------------------------------------------

def _conv_pads(node: OnnxNode, spatial: tuple[int | None, ...], kernel: list[int], strides: list[int],
               dilations: list[int]) -> list[int]:
    """Explicit ONNX pads ``[b1, b2, ..., e1, e2, ...]`` (auto_pad resolved for the static size)."""
    n = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(node.attr("pads", [0] * (2 * n)))
    if auto == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        if size is None:
            raise Unsupported("auto_pad on a dynamic spatial size")
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def _split_pads(pads: list[int]) -> tuple[list[int] | None, list[int]]:
    """Symmetric pads as torch ``padding``, else None and the ``F.pad`` list (last axis first)."""
    n = len(pads) // 2
    if pads[:n] == pads[n:]:
        return pads[:n], []
    explicit: list[int] = []
    for axis in reversed(range(n)):
        explicit += [pads[axis], pads[n + axis]]
    return None, explicit


def _conv_geometry(node: OnnxNode) -> tuple[int, list[int], list[int], list[int], int]:
    """Spatial rank, kernel, strides, dilations and groups of a Conv or ConvTranspose node."""
    w_shape = node.shape(1)
    n = len(w_shape) - 2
    kernel = list(node.attr("kernel_shape", w_shape[2:]))
    strides = list(node.attr("strides", [1] * n))
    dilations = list(node.attr("dilations", [1] * n))
    return n, kernel, strides, dilations, int(node.attr("group", 1))


@converter("Conv")
def _conv(node: OnnxNode) -> Callable[..., Any]:
    n, kernel, strides, dilations, groups = _conv_geometry(node)
    pads = _conv_pads(node, node.shape(0)[2:], kernel, strides, dilations)
    padding, explicit = _split_pads(pads)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(n)
    if conv is None:
        raise Unsupported(f"{n}-D convolution is not supported")
    padding = padding if padding is not None else [0] * n

    def run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if explicit:
            x = F.pad(x, explicit)
        return conv(x, w, b, strides, padding, dilations, groups)

    return run


@converter("ConvTranspose")
def _conv_transpose(node: OnnxNode) -> Callable[..., Any]:
    n, kernel, strides, dilations, groups = _conv_geometry(node)
    output_padding = list(node.attr("output_padding", [0] * n))
    spatial = node.shape(0)[2:]
    if "output_shape" in node.attrs or node.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
        target = list(node.attr("output_shape", [s * st for s, st in zip(spatial, strides, strict=True)]))
        target = target[-n:]
        begin, end = [], []
        for size, k, s, d, op, out in zip(spatial, kernel, strides, dilations, output_padding, target, strict=True):
            total = s * (size - 1) + op + ((k - 1) * d + 1) - out
            small, large = total // 2, total - total // 2
            upper = node.attr("auto_pad", "NOTSET") != "SAME_LOWER"
            begin.append(small if upper else large)
            end.append(large if upper else small)
        pads = begin + end
    else:
        pads = list(node.attr("pads", [0] * (2 * n)))
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}.get(n)
    if conv is None:
        raise Unsupported(f"{n}-D transposed convolution is not supported")
    begin, end = pads[:n], pads[n:]
    # torch pads both ends by ``padding`` and adds ``output_padding`` at the end: take the
    # smaller pad per axis there and crop the rest.
    padding = [min(b, e) for b, e in zip(begin, end, strict=True)]
    crop = [(b - p, e - p) for b, e, p in zip(begin, end, padding, strict=True)]

    def run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        out = conv(x, w, b, strides, padding, output_padding, groups, dilations)
        for axis, (lo, hi) in enumerate(crop):
            if lo or hi:
                out = torch.narrow(out, 2 + axis, lo, out.shape[2 + axis] - lo - hi)
        return out

    return run


def _pool_geometry(node: OnnxNode) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    kernel = list(node.attr("kernel_shape"))
    n = len(kernel)
    strides = list(node.attr("strides", [1] * n))
    dilations = list(node.attr("dilations", [1] * n))
    pads = _conv_pads(node, node.shape(0)[2:], kernel, strides, dilations)
    spatial = node.shape(0)[2:]
    # Output size per ONNX (ceil_mode: a last window must start inside the input or its
    # begin padding); reach it with explicit end padding and floor-mode pooling.
    ends = []
    for i, (size, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=True)):
        if size is None:
            raise Unsupported("pooling over a dynamic spatial size")
        span = size + pads[i] + pads[n + i] - ((k - 1) * d + 1)
        out = (-(-span // s) if node.attr("ceil_mode", 0) else span // s) + 1
        if node.attr("ceil_mode", 0) and (out - 1) * s >= size + pads[i]:
            out -= 1
        ends.append(max(pads[n + i], (out - 1) * s + (k - 1) * d + 1 - size - pads[i]))
    return kernel, strides, dilations, pads[:n], ends


@converter("MaxPool")
def _max_pool(node: OnnxNode) -> Callable[..., Any]:
    if len([o for o in node.outputs if o]) > 1:
        raise Unsupported("the Indices output is not supported")
    kernel, strides, dilations, begin, end = _pool_geometry(node)
    n = len(kernel)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}.get(n)
    if pool is None:
        raise Unsupported(f"{n}-D pooling is not supported")
    symmetric = begin == end and all(2 * p <= (k - 1) * d + 1 for p, k, d in zip(begin, kernel, dilations, strict=True))
    explicit: list[int] = []
    for axis in reversed(range(n)):
        explicit += [begin[axis], end[axis]]

    def run(x: torch.Tensor) -> torch.Tensor:
        if symmetric:
            return pool(x, kernel, strides, begin, dilations)
        padded = F.pad(x, explicit, value=float("-inf"))
        return pool(padded, kernel, strides, 0, dilations)

    return run


@converter("AveragePool")
def _avg_pool(node: OnnxNode) -> Callable[..., Any]:
    kernel, strides, dilations, begin, end = _pool_geometry(node)
    n = len(kernel)
    if any(d != 1 for d in dilations):
        raise Unsupported("dilated average pooling is not supported")
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}.get(n)
    given = _conv_pads(node, node.shape(0)[2:], kernel, strides, dilations)
    if pool is None or begin != end or begin != given[:n] or node.attr("ceil_mode", 0) \
            or any(2 * p > k for p, k in zip(begin, kernel, strict=True)):
        raise Unsupported("average pooling with asymmetric pads or ceil_mode is not supported")
    include = bool(node.attr("count_include_pad", 0))
    return lambda x: pool(x, kernel, strides, begin, False, include)


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: OnnxNode) -> Callable[..., Any]:
    dims = tuple(range(2, node.rank(0)))
    if node.op_type == "GlobalAveragePool":
        return lambda x: torch.mean(x, dims, keepdim=True)
    return lambda x: torch.amax(x, dims, keepdim=True)


@converter("BatchNormalization")
def _batch_norm(node: OnnxNode) -> Callable[..., Any]:
    eps = float(node.attr("epsilon", 1e-5))
    if node.attr("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
        raise Unsupported("training-mode batch normalisation is not supported")
    return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


@converter("InstanceNormalization")
def _instance_norm(node: OnnxNode) -> Callable[..., Any]:
    eps = float(node.attr("epsilon", 1e-5))
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


@converter("LayerNormalization")
def _layer_norm(node: OnnxNode) -> Callable[..., Any]:
    rank = node.rank(0)
    axis = _axis(node.attr("axis", -1), rank)
    eps = float(node.attr("epsilon", 1e-5))
    if len([o for o in node.outputs if o]) > 1:
        raise Unsupported("the Mean/InvStdDev outputs are not supported")
    shape = node.shape(0)[axis:]
    if None in shape:
        raise Unsupported("normalising over the batch axis is not supported")
    return lambda x, scale, bias=None: F.layer_norm(x, shape, scale, bias, eps)


@converter("Dropout")
def _dropout(node: OnnxNode) -> Callable[..., Any]:
    if len([o for o in node.outputs if o]) > 1:
        raise Unsupported("the mask output is not supported")
    return lambda x, *_: x


# -- resize -----------------------------------------------------------------------------------

def _source_coordinates(mode: str, out: int, size: int, scale: float) -> np.ndarray:
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "align_corners":
        return x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adjustment = out / (scale * size)
        center = size / 2
        offset = center * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    raise Unsupported(f"coordinate_transformation_mode {mode!r} is not supported")


def _nearest_indices(coords: np.ndarray, rounding: str, size: int) -> np.ndarray:
    if rounding == "round_prefer_floor":
        index = np.ceil(coords - 0.5)
    elif rounding == "round_prefer_ceil":
        index = np.floor(coords + 0.5)
    elif rounding == "floor":
        index = np.floor(coords)
    elif rounding == "ceil":
        index = np.ceil(coords)
    else:
        raise Unsupported(f"nearest_mode {rounding!r} is not supported")
    return np.clip(index, 0, size - 1).astype(np.int64)


def _linear_matrix(coords: np.ndarray, size: int) -> np.ndarray:
    coords = np.clip(coords, 0, size - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    frac = coords - low
    matrix = np.zeros((len(coords), size), np.float64)
    rows = np.arange(len(coords))
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix.astype(np.float32)


class NearestResize(nn.Module):
    """Nearest resize of the trailing axes by index tables computed at conversion."""

    def __init__(self, indices: list[np.ndarray], first_axis: int) -> None:
        super().__init__()
        self.first_axis = first_axis
        self.count = len(indices)
        for k, index in enumerate(indices):
            self.register_buffer(f"index{k}", torch.from_numpy(index))

    def forward(self, x: torch.Tensor, *_: Any) -> torch.Tensor:
        for k in range(self.count):
            x = torch.index_select(x, self.first_axis + k, getattr(self, f"index{k}"))
        return x


class LinearResize(nn.Module):
    """(Bi)linear resize of the last two axes as two matrix products (any coordinate transform)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("rows", torch.from_numpy(rows))
        self.register_buffer("cols_t", torch.from_numpy(np.ascontiguousarray(cols.T)))

    def forward(self, x: torch.Tensor, *_: Any) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols_t)


@converter("Resize", "Upsample")
def _resize(node: OnnxNode) -> Callable[..., Any]:
    shape = node.shape(0)
    rank = len(shape)
    mode = node.attr("mode", "nearest")
    if node.op_type == "Upsample" or node.opset < 11:
        scales_array = node.static(1) if node.has(1) else np.asarray(node.attr("scales"))
        sizes_array, ctm = None, "asymmetric"
        rounding = "floor" if node.opset < 11 else node.attr("nearest_mode", "round_prefer_floor")
    else:
        scales_array = node.static(2) if node.has(2) else None
        sizes_array = node.static(3) if node.has(3) else None
        if (node.has(2) and scales_array is None) or (node.has(3) and sizes_array is None):
            raise Unsupported("resize scales/sizes computed at run time are not supported")
        if scales_array is not None and scales_array.size == 0:
            scales_array = None
        if sizes_array is not None and sizes_array.size == 0:
            sizes_array = None
        ctm = node.attr("coordinate_transformation_mode", "half_pixel")
        rounding = node.attr("nearest_mode", "round_prefer_floor")
        if node.attr("antialias", 0) or node.attr("exclude_outside", 0):
            raise Unsupported("antialias/exclude_outside are not supported")
        if node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise Unsupported("keep_aspect_ratio_policy other than stretch is not supported")
    axes = [_axis(a, rank) for a in node.attr("axes", range(rank))]
    scales = [1.0] * rank
    sizes: list[int | None] = list(shape)
    for k, axis in enumerate(axes):
        if sizes_array is not None:
            sizes[axis] = int(sizes_array.reshape(-1)[k])
            scales[axis] = sizes[axis] / shape[axis] if shape[axis] else 1.0
        elif scales_array is not None:
            scales[axis] = float(scales_array.reshape(-1)[k])
            sizes[axis] = int(math.floor(shape[axis] * scales[axis])) if shape[axis] is not None else None
    # A dimension following the batch keeps its size: a static-batch file's ``sizes`` name its
    # fixed batch, which the converted module does not have.
    if any(shape[a] is None and sizes_array is None and scales[a] != 1.0 for a in range(rank)):
        raise Unsupported("resizing the batch axis is not supported")
    resized = [a for a in range(rank) if shape[a] is not None and (sizes[a] != shape[a] or scales[a] != 1.0)]
    if not resized:
        return lambda x, *_: x
    first = resized[0]
    if resized != list(range(first, rank)) or len(resized) > 3:
        raise Unsupported(f"resizing axes {resized} is not supported (only trailing spatial axes)")
    coords = [_source_coordinates(ctm, sizes[a], shape[a], scales[a]) for a in resized]
    if mode == "nearest":
        indices = [_nearest_indices(c, rounding, shape[a]) for c, a in zip(coords, resized, strict=True)]
        factors = [sizes[a] // shape[a] if sizes[a] % shape[a] == 0 else 0 for a in resized]
        if len(resized) == rank - 2 and first == 2 and all(
                f and np.array_equal(i, np.arange(sizes[a]) // f) for i, f, a in zip(indices, factors, resized, strict=True)):
            scale_factor = tuple(float(f) for f in factors)
            return lambda x, *_: F.interpolate(x, scale_factor=scale_factor, mode="nearest")
        return NearestResize(indices, first)
    if mode == "linear":
        if len(resized) > 2:
            raise Unsupported("linear resize of more than two axes is not supported")
        if len(resized) == 1:
            resized, coords = [rank - 2, *resized], [np.arange(shape[rank - 2], dtype=np.float64), *coords]
        rows = _linear_matrix(coords[0], shape[resized[0]])
        cols = _linear_matrix(coords[1], shape[resized[1]])
        return LinearResize(rows, cols)
    raise Unsupported(f"mode {mode!r} is not supported")


# -- shape arithmetic on Python values ------------------------------------------------------

def _elementwise(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        lengths = {len(a) for a in args if isinstance(a, tuple)}
        if not lengths:
            return fn(*args)
        n = max(lengths)
        if lengths - {1, n}:
            raise Unsupported(f"shape values of lengths {sorted(lengths)} do not broadcast")
        spread = [a * n if isinstance(a, tuple) and len(a) == 1 else a if isinstance(a, tuple) else (a,) * n for a in args]
        return tuple(fn(*items) for items in zip(*spread, strict=True))

    return apply


def _py_div(a: Any, b: Any) -> Any:
    if isinstance(a, float) or isinstance(b, float):
        return a / b
    if isinstance(a, int) and isinstance(b, int):
        return int(a / b) if (a < 0) != (b < 0) else a // b
    return a // b  # SymInt sizes are non-negative


_PY_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "Div": _py_div,
    "Mod": lambda a, b: a % b, "Equal": lambda a, b: a == b, "Less": lambda a, b: a < b,
    "Greater": lambda a, b: a > b, "LessOrEqual": lambda a, b: a <= b, "GreaterOrEqual": lambda a, b: a >= b,
    "Max": lambda a, b: max(a, b), "Min": lambda a, b: min(a, b),
}


@shape_op(*_PY_BINARY)
def _py_binary(node: OnnxNode) -> Callable[..., Any]:
    fn = _elementwise(_PY_BINARY[node.op_type])

    def run(*args: Any) -> Any:
        out = args[0]
        for arg in args[1:]:
            out = fn(out, arg)
        return out

    return run


@shape_op("Neg", "Abs", "Floor", "Ceil", "Identity", "Not", "Sqrt")
def _py_unary(node: OnnxNode) -> Callable[..., Any]:
    fn = {"Neg": lambda a: -a, "Abs": abs, "Floor": math.floor, "Ceil": math.ceil, "Identity": lambda a: a,
          "Not": lambda a: not a, "Sqrt": math.sqrt}[node.op_type]
    return _elementwise(fn)


@shape_op("Clip")
def _py_clip(node: OnnxNode) -> Callable[..., Any]:
    """``Clip`` on shape values (RT-DETR clips a sequence length); int bounds keep ints."""

    def one(value: Any, low: Any, high: Any) -> Any:
        if low is not None:
            value = max(value, low)
        if high is not None:
            value = min(value, high)
        return value

    def run(x: Any, low: Any = None, high: Any = None) -> Any:
        return _elementwise(lambda v: one(v, low, high))(x)

    return run


@shape_op("Where")
def _py_where(node: OnnxNode) -> Callable[..., Any]:
    return _elementwise(lambda c, a, b: a if c else b)


def _to_float(value: Any) -> Any:
    """``float`` that keeps a symbolic size symbolic (``float()`` of a SymInt pins it to its example value
    under ``torch.export``: RT-DETR-l casts its batch size to float)."""
    return torch.sym_float(value) if isinstance(value, torch.SymInt) else float(value)


def _to_int(value: Any) -> Any:
    """``int`` (truncating), likewise keeping symbolic sizes symbolic."""
    if isinstance(value, torch.SymInt):
        return value
    return torch.sym_int(value) if isinstance(value, torch.SymFloat) else int(value)


@shape_op("Cast")
def _py_cast(node: OnnxNode) -> Callable[..., Any]:
    target = _onnx_torch_dtype(node.attr("to"))
    fn = bool if target == torch.bool else _to_float if target.is_floating_point else _to_int
    return _elementwise(fn)


@shape_op("Gather")
def _py_gather(node: OnnxNode) -> Callable[..., Any]:
    def run(data: Any, indices: Any) -> Any:
        if not isinstance(data, tuple):
            raise Unsupported("gathering from a scalar")
        if isinstance(indices, tuple):
            return tuple(data[i] for i in indices)
        return data[indices]

    return run


@shape_op("Unsqueeze")
def _py_unsqueeze(node: OnnxNode) -> Callable[..., Any]:
    def run(x: Any, _axes: Any = None) -> Any:
        if isinstance(x, tuple):
            raise Unsupported("unsqueezing a 1-D shape value to 2-D")
        return (x,)

    return run


@shape_op("Squeeze")
def _py_squeeze(node: OnnxNode) -> Callable[..., Any]:
    def run(x: Any, _axes: Any = None) -> Any:
        return x[0] if isinstance(x, tuple) and len(x) == 1 else x

    return run


@shape_op("Reshape", "Flatten")
def _py_reshape(node: OnnxNode) -> Callable[..., Any]:
    def run(x: Any, shape: Any = (-1,)) -> Any:
        shape = shape if isinstance(shape, tuple) else (shape,)
        if len(shape) == 0:
            return x[0] if isinstance(x, tuple) else x
        if len(shape) == 1:
            return x if isinstance(x, tuple) else (x,)
        raise Unsupported("reshaping a shape value to 2-D")

    return run


@shape_op("Concat")
def _py_concat(node: OnnxNode) -> Callable[..., Any]:
    def run(*parts: Any) -> Any:
        out: tuple = ()
        for part in parts:
            out += part if isinstance(part, tuple) else (part,)
        return out

    return run


@shape_op("Slice")
def _py_slice(node: OnnxNode) -> Callable[..., Any]:
    def run(x: Any, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None) -> Any:
        if node.opset < 10:
            starts, ends = tuple(node.attr("starts")), tuple(node.attr("ends"))
        start = starts[0] if isinstance(starts, tuple) else starts
        end = ends[0] if isinstance(ends, tuple) else ends
        step = steps[0] if isinstance(steps, tuple) else (1 if steps is None else steps)
        s, e, st = _slice_axis(start, end, step, len(x))
        return tuple(x[s:e:st]) if st > 0 else tuple(x[s:(None if e < 0 else e):st])

    return run


@shape_op("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin")
def _py_reduce(node: OnnxNode) -> Callable[..., Any]:
    keep = bool(node.attr("keepdims", 1))
    op = node.op_type

    def run(x: Any, _axes: Any = None) -> Any:
        items = x if isinstance(x, tuple) else (x,)
        if op == "ReduceProd":
            out = math.prod(items)
        elif op == "ReduceSum":
            out = sum(items)
        else:
            out = max(items) if op == "ReduceMax" else min(items)
        return (out,) if keep else out

    return run


@shape_op("Shape")
def _py_shape(node: OnnxNode) -> Callable[..., Any]:
    return lambda x: (len(x),) if isinstance(x, tuple) else ()
