"""Graph preparation: load an ONNX model, fold everything constant, plan the run-time steps.

Every ONNX value is classified once, at conversion, for a fixed per-sample input shape:

- ``const``: known now (initializers, ``Constant`` nodes, anything computed only from them,
  and shape arithmetic that does not depend on the batch size). Evaluated here, once.
- ``shape``: a small integer value that depends on the batch size (``Shape`` of a batched
  tensor and arithmetic on it). At run time it is a Python int or tuple built from
  ``x.shape`` (SymInts under ``torch.export``), never a tensor, so nothing reads a size from
  device memory.
- ``tensor``: data computed from the inputs; at run time a ``torch.Tensor``.

Which values depend on the batch is found by running the graph symbolically for two probe
batch sizes: data tensors on the ``meta`` device (shapes only, no arithmetic), shape values as
Python ints. A value equal in both probes is constant and is folded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import onnx
    import onnx.helper as helper
    import onnx.numpy_helper as numpy_helper
else:
    onnx = lazy_import("onnx")
    helper = lazy_import("onnx.helper")
    numpy_helper = lazy_import("onnx.numpy_helper")

CONST, SHAPE, TENSOR = "const", "shape", "tensor"
#: Batch sizes the graph is probed at; none is 1, so a static batch of 1 never looks dynamic. A value equal at
#: every probe is folded as a constant: three probes, so a value that moves with the batch but not between two
#: neighbours (``floor(B / 2)`` is 1 at 2 and 3) is not mistaken for one.
PROBES = (2, 3, 5)

#: A converter turns one ONNX node into a callable (a function or an ``nn.Module``) that is
#: called with one run-time value per ONNX input (None for absent inputs and for inputs the
#: converter read at conversion with ``OnnxNode.static``/``ints``) and returns a tensor, or a
#: sequence of tensors for a node with several outputs.
Converter = Callable[["OnnxNode"], Callable[..., Any]]
#: A shape-arithmetic implementation: like a converter, but its callable takes and returns
#: Python ints/floats/bools and tuples of them.
ShapeOp = Callable[["OnnxNode"], Callable[..., Any]]


class Unsupported(Exception):
    """Raised by a converter for a node (or attribute value) it cannot express in torch."""


@dataclass
class Value:
    kind: str
    #: ``const``: the numpy array.
    array: np.ndarray | None = None
    #: ``shape``: the Python value per probe; ``tensor``: a meta tensor per probe.
    probes: tuple[Any, ...] = ()


@dataclass
class Step:
    fn: Callable[..., Any]
    inputs: tuple[str | None, ...]
    outputs: tuple[str, ...]
    op_type: str
    name: str
    #: Inputs holding shape values that the step takes as data (converted with torch.tensor).
    as_tensor: tuple[int, ...] = ()


@dataclass
class Plan:
    inputs: list[str]
    #: Per-sample shapes (without the batch dimension) the graph was folded for.
    input_shapes: dict[str, tuple[int, ...]]
    input_dtypes: dict[str, torch.dtype]
    outputs: list[str]
    steps: list[Step]
    #: Constants the steps read at run time (weights): become parameters and buffers.
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Constants the shape steps read at run time, as Python values.
    python: dict[str, Any] = field(default_factory=dict)
    #: ONNX ``metadata_props``.
    metadata: dict[str, str] = field(default_factory=dict)


def _attribute(attr: Any) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    if hasattr(value, "dims") and hasattr(value, "data_type"):
        return numpy_helper.to_array(value)
    return value


def _torch_dtype(elem_type: int) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(elem_type))).dtype


def _to_python(array: np.ndarray) -> Any:
    value = array.tolist()
    return tuple(value) if isinstance(value, list) else value


def _python_dtype(value: Any) -> np.dtype:
    items = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, bool) for v in items):
        return np.dtype(bool)
    if any(isinstance(v, float) for v in items):
        return np.dtype(np.float32)
    return np.dtype(np.int64)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class OnnxNode:
    """What a converter sees of one ONNX node: attributes, and its inputs as known at conversion."""

    def __init__(self, proto: Any, index: int, values: Mapping[str, Value], opset: int, static_batch: int | None) -> None:
        self.proto = proto
        self.op_type: str = proto.op_type
        self.domain: str = proto.domain
        self.name: str = proto.name or f"{proto.op_type}_{index}"
        self.inputs: list[str] = list(proto.input)
        self.outputs: list[str] = list(proto.output)
        self.attrs: dict[str, Any] = {a.name: _attribute(a) for a in proto.attribute}
        #: The opset version of the node's domain the model imports.
        self.opset = opset
        #: The batch size the graph input declares when it is fixed (e.g. 1 for Ultralytics'
        #: default export), else None. The module runs at any batch size either way.
        self.static_batch = static_batch
        self._values = values
        self.baked: set[int] = set()
        self.shape_args: set[int] = set()

    def __repr__(self) -> str:
        return f"<{self.op_type} node {self.name!r}>"

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        """Whether input ``i`` is given (ONNX marks an absent optional input with an empty name)."""
        return i < len(self.inputs) and self.inputs[i] != ""

    def value(self, i: int) -> Value | None:
        return self._values[self.inputs[i]] if self.has(i) else None

    def kind(self, i: int) -> str | None:
        value = self.value(i)
        return value.kind if value is not None else None

    def static(self, i: int) -> np.ndarray | None:
        """Input ``i`` as a numpy array when it is constant (then it is not passed at run time)."""
        value = self.value(i)
        if value is None or value.kind != CONST:
            return None
        self.baked.add(i)
        return value.array

    def ints(self, i: int) -> list[int] | None:
        """A sizes/axes-like input: a list when constant; None when it is a run-time shape value
        (passed to the callable as a tuple of ints); Unsupported when computed from data."""
        array = self.static(i)
        if array is not None:
            return [int(v) for v in np.asarray(array).reshape(-1)]
        kind = self.kind(i)
        if kind == SHAPE:
            self.shape_args.add(i)
            return None
        if kind is None:
            return None
        raise Unsupported(f"input {i} ({self.inputs[i]!r}) is computed from tensor data at run time; "
                          "only constant or shape-derived sizes are supported")

    def shape(self, i: int) -> tuple[int | None, ...]:
        """Input ``i``'s shape at conversion; None marks a dimension that follows the batch size."""
        value = self.value(i)
        if value is None:
            raise Unsupported(f"input {i} is absent")
        if value.kind == CONST:
            return tuple(value.array.shape)
        if value.kind == SHAPE:
            first = value.probes[0]
            return (len(first),) if isinstance(first, tuple) else ()
        dims = zip(*(t.shape for t in value.probes), strict=True)
        return tuple(d[0] if all(x == d[0] for x in d) else None for d in dims)

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def dtype(self, i: int) -> torch.dtype:
        value = self.value(i)
        if value is None:
            raise Unsupported(f"input {i} is absent")
        if value.kind == CONST:
            return torch.from_numpy(np.zeros(0, value.array.dtype)).dtype
        if value.kind == SHAPE:
            return torch.from_numpy(np.zeros(0, _python_dtype(value.probes[0]))).dtype
        return value.probes[0].dtype


def load_model(model: Any) -> tuple[Any, str]:
    """An ``onnx.ModelProto`` and a label for messages, from a path, bytes or a ModelProto.

    Checked first (``checks.check_structure``): an empty file, a model without a graph or an
    initializer that does not hold what it declares is one ``ModelError`` line.
    """
    from trtdet.errors import ModelError
    from trtdet.onnx_torch.checks import check_structure

    if isinstance(model, onnx.ModelProto):
        proto, label = model, "<onnx model>"
    elif isinstance(model, bytes | bytearray):
        if not model:
            raise ModelError("<onnx bytes>: model is empty")
        try:
            proto, label = onnx.load_from_string(bytes(model)), "<onnx bytes>"
        except ImportError:  # a missing package (imported on first use) is not the input's problem
            raise
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            raise ModelError(f"<onnx bytes>: not a readable ONNX model ({type(exc).__name__})") from exc
    else:
        path = Path(model)
        try:
            empty = path.stat().st_size == 0
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
        if empty:
            raise ModelError(f"{path}: model file is empty")
        try:
            proto, label = onnx.load(str(path)), str(path)
        except ImportError:  # a missing package (imported on first use) is not the input's problem
            raise
        except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError, ...
            raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    check_structure(proto, label)
    return proto, label


def _input_shapes(graph: Any, initializers: set[str], input_size: tuple[int, int] | None,
                  input_shapes: Mapping[str, Sequence[int]] | None, label: str) -> tuple[dict, dict, int | None]:
    from trtdet.errors import ModelError

    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, torch.dtype] = {}
    static_batch: int | None = None
    for inp in graph.input:
        if inp.name in initializers:
            continue
        tensor_type = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if not dims:
            raise ModelError(f"{label}: input {inp.name!r} has no batch dimension (rank 0 or unknown)")
        if dims[0] is not None:
            static_batch = dims[0] if static_batch is None else static_batch
        per_sample = dims[1:]
        given = (input_shapes or {}).get(inp.name)
        if given is not None:
            given = tuple(int(d) for d in given)
            if len(given) != len(per_sample) or any(d is not None and d != g for d, g in zip(per_sample, given, strict=True)):
                raise ModelError(f"{label}: input {inp.name!r} is {['?' if d is None else d for d in dims]}, "
                                 f"cannot run it as [batch, {', '.join(map(str, given))}]")
            per_sample = list(given)
        elif input_size is not None and len(per_sample) == 3:
            for axis, size in ((1, input_size[0]), (2, input_size[1])):
                if per_sample[axis] is not None and per_sample[axis] != size:
                    raise ModelError(f"{label}: input {inp.name!r} is fixed at {per_sample[1]}x{per_sample[2]}, "
                                     f"not {input_size[0]}x{input_size[1]}")
                per_sample[axis] = int(size)
        if any(d is None for d in per_sample):
            raise ModelError(f"{label}: input {inp.name!r} has dynamic dimensions {dims}; give the input size "
                             "to fold its shape computations")
        shapes[inp.name] = tuple(per_sample)
        dtypes[inp.name] = _torch_dtype(tensor_type.elem_type)
    return shapes, dtypes, static_batch


def _constant_node(node: OnnxNode) -> np.ndarray:
    if "value" in node.attrs:
        return np.asarray(node.attrs["value"])
    if "value_float" in node.attrs:
        return np.array(node.attrs["value_float"], np.float32)
    if "value_floats" in node.attrs:
        return np.array(node.attrs["value_floats"], np.float32)
    if "value_int" in node.attrs:
        return np.array(node.attrs["value_int"], np.int64)
    if "value_ints" in node.attrs:
        return np.array(node.attrs["value_ints"], np.int64)
    raise Unsupported(f"Constant attributes {sorted(node.attrs)} are not supported")


def _meta(array: np.ndarray) -> torch.Tensor:
    dtype = torch.from_numpy(np.zeros(0, array.dtype)).dtype
    if dtype.is_floating_point:
        dtype = torch.float32
    return torch.empty(array.shape, dtype=dtype, device="meta")


def _runtime_tensor(array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(array, copy=True, order="C"))
    return tensor.float() if tensor.is_floating_point() else tensor


def _as_list(result: Any, count: int) -> list[Any]:
    if count == 1 and not isinstance(result, list | tuple):
        return [result]
    if count == 1 and isinstance(result, tuple) and not all(isinstance(r, torch.Tensor) for r in result):
        return [result]
    return list(result)


def shape_to_tensor(value: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """A shape value (int, float or tuple) used as data, on ``device`` (where the data is): int64, or float32
    where it holds a float (a size cast to float, as RT-DETR-l's decoder scales by its batch)."""
    items = value if isinstance(value, tuple) else (value,)
    floating = any(isinstance(v, (float, torch.SymFloat)) for v in items)
    return torch.tensor(value, dtype=torch.float32 if floating else torch.int64, device=device)


def build_plan(
    model: Any,
    *,
    label: str,
    converters: Mapping[str, Converter],
    shape_ops: Mapping[str, ShapeOp],
    input_size: tuple[int, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Plan:
    """Fold ``model`` for its fixed per-sample input shapes and list the steps left to run."""
    from trtdet.onnx_torch.checks import check_initializers

    check_initializers(model.graph, label)  # before numpy is asked for what they declare
    graph = model.graph
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    initializers = {init.name for init in graph.initializer}
    shapes, dtypes, static_batch = _input_shapes(graph, initializers, input_size, input_shapes, label)
    values = _initial_values(graph, shapes, dtypes)
    steps: list[Step] = []
    meta_consts: dict[str, torch.Tensor] = {}
    for index, proto in enumerate(graph.node):
        node = OnnxNode(proto, index, values, opsets.get(proto.domain or "ai.onnx", 1), static_batch)
        _plan_node(node, values, steps, meta_consts, converters, shape_ops, label)
    outputs = [o.name for o in graph.output]
    _check_outputs(graph, values, static_batch, label)
    plan = Plan(inputs=list(shapes), input_shapes=shapes, input_dtypes=dtypes, outputs=outputs, steps=[],
                metadata={p.key: p.value for p in model.metadata_props})
    _keep_needed(plan, steps, values)
    return plan


def _initial_values(graph: Any, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, torch.dtype]) -> dict[str, Value]:
    """The initializers as constants and the graph inputs as meta tensors at each probe batch."""
    values: dict[str, Value] = {}
    for init in graph.initializer:
        values[init.name] = Value(CONST, array=numpy_helper.to_array(init))
    for name, shape in shapes.items():
        values[name] = Value(TENSOR, probes=tuple(torch.empty((p, *shape), dtype=dtypes[name], device="meta") for p in PROBES))
    return values


def _plan_node(
    node: OnnxNode,
    values: dict[str, Value],
    steps: list[Step],
    meta_consts: dict[str, torch.Tensor],
    converters: Mapping[str, Converter],
    shape_ops: Mapping[str, ShapeOp],
    label: str,
) -> None:
    """Fold ``node`` when its inputs are known, else add the step that runs it; ``ModelError`` naming it when it cannot be."""
    from trtdet.errors import ModelError

    def fail(message: str) -> ModelError:
        return ModelError(f"{label}: ONNX {node.op_type} node {node.name!r}: {message}")

    missing = [n for n in node.inputs if n and n not in values]
    if missing:
        raise fail(f"input {missing[0]!r} is not produced by any earlier node (subgraphs are not supported)")
    kinds = {values[n].kind for n in node.inputs if n}
    try:
        if node.op_type == "Constant":
            values[node.outputs[0]] = Value(CONST, array=_constant_node(node))
        elif node.op_type in ("Shape", "Size") and kinds == {TENSOR}:
            _plan_shape_of(node, values, steps)
        elif TENSOR not in kinds and (SHAPE in kinds or node.op_type not in converters) and node.op_type in shape_ops:
            _plan_shape_op(node, shape_ops[node.op_type], values, steps)
        else:
            converter = converters.get(node.op_type)
            if converter is None:
                raise ModelError(f"{label}: ONNX op {node.op_type} (node {node.name!r}) has no torch converter "
                                 "(a plugin can add one through the trtdet_onnx_torch_ops hook)")
            fn = converter(node)
            if not kinds - {CONST}:
                _fold(node, fn, values)
            else:
                _plan_tensor_op(node, fn, values, steps, meta_consts)
    except ModelError:
        raise
    except Unsupported as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a converter failing on this node's shapes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise fail(f"cannot be converted ({type(exc).__name__}: {first})") from exc


def _check_outputs(graph: Any, values: dict[str, Value], static_batch: int | None, label: str) -> None:
    """``ModelError`` when a graph output is not produced, or does not follow the batch its shape says it does."""
    from trtdet.errors import ModelError

    for out in graph.output:
        if out.name not in values:
            raise ModelError(f"{label}: graph output {out.name!r} is not produced by any node")
        value = values[out.name]
        dims = out.type.tensor_type.shape.dim
        follows_batch = bool(dims) and (dims[0].HasField("dim_param") or (static_batch is not None and dims[0].dim_value == static_batch))
        if value.kind == TENSOR and follows_batch and value.probes[0].dim() > 0:
            got = [t.shape[0] for t in value.probes]
            if got != list(PROBES):
                raise ModelError(f"{label}: output {out.name!r} does not follow the batch size "
                                 f"(batches {list(PROBES)} give leading dims {got})")


def _keep_needed(plan: Plan, steps: list[Step], values: dict[str, Value]) -> None:
    """Keep only the steps the outputs need, and the constants those steps read (Python values for shape steps)."""
    needed = set(plan.outputs)
    kept: list[Step] = []
    for step in reversed(steps):
        if needed.intersection(step.outputs):
            kept.append(step)
            needed.update(n for n in step.inputs if n)
    plan.steps = kept[::-1]
    for name in sorted(needed):
        value = values.get(name)
        if value is None or value.kind != CONST:
            continue
        readers = [s for s in plan.steps if name in s.inputs]
        if any(getattr(s.fn, "shape_mode", False) for s in readers):
            alias = f"{name}#python"
            plan.python[alias] = _to_python(value.array)
            for s in readers:
                if getattr(s.fn, "shape_mode", False):
                    s.inputs = tuple(alias if n == name else n for n in s.inputs)
        if name in plan.outputs or any(not getattr(s.fn, "shape_mode", False) for s in readers):
            plan.tensors[name] = _runtime_tensor(value.array)


def _plan_shape_of(node: OnnxNode, values: dict[str, Value], steps: list[Step]) -> None:
    tensors = values[node.inputs[0]].probes
    if node.op_type == "Size":
        probes = tuple(int(t.numel()) for t in tensors)

        def fn(x: torch.Tensor) -> Any:
            return x.numel()
    else:
        rank = tensors[0].dim()
        start = node.attr("start", 0)
        end = node.attr("end", rank)
        probes = tuple(tuple(t.shape)[start:end] for t in tensors)

        def fn(x: torch.Tensor) -> Any:
            return tuple(x.shape)[start:end]

    _record_shape(node, fn, probes, values, steps)


def _record_shape(node: OnnxNode, fn: Callable[..., Any], probes: tuple[Any, ...],
                  values: dict[str, Value], steps: list[Step]) -> None:
    if all(_same(p, probes[0]) for p in probes):
        values[node.outputs[0]] = Value(CONST, array=np.array(probes[0], dtype=_python_dtype(probes[0])))
        return
    fn.shape_mode = True  # type: ignore[attr-defined]
    values[node.outputs[0]] = Value(SHAPE, probes=probes)
    steps.append(Step(fn, tuple(n or None for n in node.inputs), (node.outputs[0],), node.op_type, node.name))


def _plan_shape_op(node: OnnxNode, shape_op: ShapeOp, values: dict[str, Value], steps: list[Step]) -> None:
    if len([o for o in node.outputs if o]) != 1:
        raise Unsupported("shape arithmetic with several outputs is not supported")
    for i in range(len(node.inputs)):
        value = node.value(i)
        if value is not None and value.kind == CONST and value.array.ndim > 1:
            raise Unsupported(f"input {i} has rank {value.array.ndim}; shape arithmetic takes scalars and 1-D values")
    fn = shape_op(node)
    probes = []
    for p in range(len(PROBES)):
        args = []
        for i in range(len(node.inputs)):
            value = node.value(i)
            if value is None:
                args.append(None)
            elif value.kind == CONST:
                args.append(_to_python(value.array))
            else:
                args.append(value.probes[p])
        probes.append(fn(*args))
    _record_shape(node, fn, tuple(probes), values, steps)


def _fold(node: OnnxNode, fn: Callable[..., Any], values: dict[str, Value]) -> None:
    args = []
    for i in range(len(node.inputs)):
        value = node.value(i)
        if value is None or i in node.baked:
            args.append(None)
        else:
            args.append(torch.from_numpy(np.array(value.array, copy=True, order="C")))
    kwargs = {"device": torch.device("cpu")} if getattr(fn, "creates_tensor", False) else {}
    with torch.no_grad():
        results = _as_list(fn(*args, **kwargs), len(node.outputs))
    for name, result in zip(node.outputs, results, strict=False):
        if name:
            array = result.detach().cpu().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)
            values[name] = Value(CONST, array=array)


def _plan_tensor_op(node: OnnxNode, fn: Callable[..., Any], values: dict[str, Value], steps: list[Step],
                    meta_consts: dict[str, torch.Tensor]) -> None:
    as_tensor = tuple(i for i in range(len(node.inputs))
                      if node.kind(i) == SHAPE and i not in node.shape_args)
    probes: list[list[Any]] = []
    for p in range(len(PROBES)):
        args = []
        for i, name in enumerate(node.inputs):
            value = node.value(i)
            if value is None or i in node.baked:
                args.append(None)
            elif value.kind == CONST:
                if name not in meta_consts:
                    meta_consts[name] = _meta(value.array)
                args.append(meta_consts[name])
            elif value.kind == SHAPE:
                probe = value.probes[p]
                args.append(torch.empty((len(probe),) if isinstance(probe, tuple) else (), dtype=torch.int64,
                                        device="meta") if i in as_tensor else probe)
            else:
                args.append(value.probes[p])
        kwargs = {"device": torch.device("meta")} if getattr(fn, "creates_tensor", False) else {}
        with torch.no_grad():
            probes.append(_as_list(fn(*args, **kwargs), len(node.outputs)))
    for k, name in enumerate(node.outputs):
        if name:
            values[name] = Value(TENSOR, probes=tuple(result[k] for result in probes))
    step_inputs = tuple(None if (not n or i in node.baked) else n for i, n in enumerate(node.inputs))
    steps.append(Step(fn, step_inputs, tuple(node.outputs), node.op_type, node.name, as_tensor))
