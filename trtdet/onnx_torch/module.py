"""The converted network: an ``nn.Module`` that replays the planned steps over a slot list."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from trtdet.onnx_torch.graph import Plan, shape_to_tensor


def _attribute_name(name: str, taken: set[str]) -> str:
    base = "c_" + (re.sub(r"\W", "_", name).strip("_") or "value")
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


class OnnxModule(nn.Module):
    """An ONNX graph as torch: weights are parameters (floats) and buffers (integers), the
    forward runs one callable per remaining node; shapes are Python values, never tensors.

    ``forward(x, *others)`` takes the graph inputs in ONNX order and returns the one output, or a
    tuple of them in ONNX order (``output_names``).
    """

    def __init__(self, plan: Plan, source: str = "<onnx model>") -> None:
        super().__init__()
        self.source = source
        self.input_names = list(plan.inputs)
        self.output_names = list(plan.outputs)
        #: Per-sample input shapes (batch excluded) the graph was folded for.
        self.input_shapes = dict(plan.input_shapes)
        self.metadata = dict(plan.metadata)
        slots: dict[str, int] = {}

        def slot(name: str | None) -> int:
            if not name:
                return 0
            if name not in slots:
                slots[name] = len(slots) + 1
            return slots[name]

        taken: set[str] = set()
        self._const_slots: list[tuple[int, str, bool]] = []
        for name, tensor in plan.tensors.items():
            attr = _attribute_name(name, taken)
            if tensor.is_floating_point():
                self.register_parameter(attr, nn.Parameter(tensor, requires_grad=False))
            else:
                self.register_buffer(attr, tensor)
            self._const_slots.append((slot(name), attr, tensor.is_floating_point()))
        self._input_slots = [slot(n) for n in plan.inputs]
        self.layers = nn.ModuleList()
        steps = []
        for step in plan.steps:
            if isinstance(step.fn, nn.Module):
                self.layers.append(step.fn)
            steps.append((step, tuple(slot(n) for n in step.inputs), tuple(slot(n) for n in step.outputs)))
        self._output_slots = [slot(n) for n in plan.outputs]
        template: list[Any] = [None] * (len(slots) + 1)
        for name, value in plan.python.items():
            template[slot(name)] = value
        self._template = template
        # Free each intermediate after its last reader (activations do not pile up at big batches).
        last_use: dict[int, int] = {}
        for k, (_step, ins, _outs) in enumerate(steps):
            for i in ins:
                last_use[i] = k
        keep = set(self._output_slots) | {s for s, _a, _p in self._const_slots} | set(self._input_slots)
        self._steps = []
        for k, (step, ins, outs) in enumerate(steps):
            free = tuple(i for i in set(ins) if i and last_use.get(i) == k and i not in keep)
            free += tuple(o for o in outs if o and o not in last_use and o not in keep)
            self._steps.append((step.fn, ins, outs, free, step.as_tensor, bool(getattr(step.fn, "creates_tensor", False))))
        self._step_names = [(s.op_type, s.name) for s in plan.steps]
        self.eval()

    def extra_repr(self) -> str:
        return f"source={self.source!r}, inputs={self.input_shapes}, steps={len(self._steps)}"

    def forward(self, x: Any, *others: Any) -> Any:
        inputs = (x, *others)
        if len(inputs) != len(self._input_slots):
            raise TypeError(f"expected {len(self._input_slots)} inputs ({', '.join(self.input_names)}), got {len(inputs)}")
        env = list(self._template)
        for s, x in zip(self._input_slots, inputs, strict=True):
            env[s] = x
        params, buffers = self._parameters, self._buffers
        for s, attr, is_param in self._const_slots:
            env[s] = params[attr] if is_param else buffers[attr]
        device = inputs[0].device
        for fn, ins, outs, free, as_tensor, creates in self._steps:
            args = [env[i] if i else None for i in ins]
            for k in as_tensor:
                args[k] = shape_to_tensor(args[k], device)
            result = fn(*args, device=device) if creates else fn(*args)
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                for o, value in zip(outs, result, strict=False):
                    if o:
                        env[o] = value
            for i in free:
                env[i] = None
        outputs = tuple(v if isinstance(v, torch.Tensor) else shape_to_tensor(v, device) for v in (env[s] for s in self._output_slots))
        return outputs[0] if len(outputs) == 1 else outputs
