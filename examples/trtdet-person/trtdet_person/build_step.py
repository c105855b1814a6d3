"""A build step: ``--build-option person_head=person`` trims the COCO head to persons in the engine.

The YOLO11n head is ``[B, 84, N]``; the person decoder needs only the box rows and the person
score where person is the best class. With ``person`` the step appends standard ONNX ops
(Slice, ArgMax, Equal, Cast, Mul, Concat) so the engine itself outputs ``[B, 5, N]``: the box
and that score (0 where another class wins). The engine does the per-anchor class test and the
output the pipeline reads is 17x smaller; the detections are the same (the decoder reads either
head). ``coco`` (the default) builds the file as it is. It needs no runtime plugin, so every
TensorRT accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtdet.contracts.build_steps import RuntimeInfo, StepPlugins
from trtdet.model import ModelSpec

from trtdet_person.decode import HEAD_ROWS, PERSON, PERSON_ROWS

if TYPE_CHECKING:  # registering the step must not import onnx: only a build (which loads an ONNX) does
    import onnx

NAME = "person_head"
OUTPUT = "person_head"


def _head_output(onnx_model: onnx.ModelProto) -> onnx.ValueInfoProto | None:
    """The graph's single ``[B, 84, N]`` output, if it has one."""
    outputs = list(onnx_model.graph.output)
    if len(outputs) != 1:
        return None
    dims = outputs[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[1].HasField("dim_value") or dims[1].dim_value != HEAD_ROWS:
        return None
    return outputs[0]


def trim_to_persons(onnx_model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``onnx_model`` whose output is the ``[B, 5, N]`` person head."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    head = _head_output(model)
    if head is None:
        raise ValueError("the model has no single [B, 84, N] output")
    graph = model.graph

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(helper.make_tensor(f"{OUTPUT}/{name}", TensorProto.INT64, [len(values)], values))
        return f"{OUTPUT}/{name}"

    axis = const("axis", [1])
    p = f"{OUTPUT}/"
    graph.node.extend([
        helper.make_node("Slice", [head.name, const("box_start", [0]), const("box_end", [4]), axis], [p + "boxes"]),
        helper.make_node("Slice", [head.name, const("cls_start", [4]), const("cls_end", [HEAD_ROWS]), axis], [p + "scores"]),
        helper.make_node("ArgMax", [p + "scores"], [p + "best"], axis=1, keepdims=1),
        helper.make_node("Equal", [p + "best", const("person", [PERSON])], [p + "is_person"]),
        helper.make_node("Slice", [p + "scores", const("p_start", [PERSON]), const("p_end", [PERSON + 1]), axis], [p + "score"]),
        helper.make_node("CastLike", [p + "is_person", p + "score"], [p + "mask"]),
        helper.make_node("Mul", [p + "score", p + "mask"], [p + "person_score"]),
        helper.make_node("Concat", [p + "boxes", p + "person_score"], [OUTPUT], axis=1),
    ])
    dims = head.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    shape[1] = PERSON_ROWS
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, head.type.tensor_type.elem_type, shape))
    return model


@dataclass(frozen=True)
class PersonHead:
    """The ``person_head`` build step (see the module docstring)."""

    name: str = NAME
    choices: tuple[str, ...] = ("coco", "person")
    default: str = "coco"
    help: str = "Head of the person engine: the COCO head as exported, or trimmed to persons inside the engine."

    def applies(self, onnx_model: onnx.ModelProto, spec: ModelSpec) -> bool:
        return spec.name == "person" and _head_output(onnx_model) is not None

    def resolve(self, choice: str, runtime: RuntimeInfo) -> str:
        return choice  # standard ops only: any TensorRT

    def rewrite(self, onnx_model: onnx.ModelProto, spec: ModelSpec, choice: str) -> onnx.ModelProto:
        return trim_to_persons(onnx_model) if choice == "person" else onnx_model

    def prepare(self, choice: str, runtime: RuntimeInfo) -> StepPlugins:
        return StepPlugins()

    def parse_hint(self, op_type: str, choice: str, runtime: RuntimeInfo) -> str | None:
        return None


PERSON_HEAD_STEP = PersonHead()
