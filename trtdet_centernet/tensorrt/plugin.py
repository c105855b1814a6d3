"""The DCNv2 TensorRT plugin: a Python ``IPluginV3`` whose enqueue runs trtdet's CUDA DCNv2 kernel.

Plugin ``TrtdetDCNv2`` version ``1`` in namespace ``trtdet``. Inputs (all linear, all float32
or all float16): X [N, C, H, W], weight [Co, C, kh, kw], offset [N, 2*G*kh*kw, Ho, Wo],
bias [Co], and mask [N, G*kh*kw, Ho, Wo] when ``with_mask`` is 1; output [N, Co, Ho, Wo].
Fields (INT32, serialised into the engine): ``stride``, ``padding``, ``dilation`` (each
[h, w]), ``deformable_groups``, ``with_mask``. ONNX nodes of that op type carry the same
names as attributes, which the TensorRT ONNX parser turns into these fields.

The classes subclass the TensorRT module chosen at run time (``tensorrt`` or
``tensorrt_rtx_bindings``), so they are made per module by ``plugin_classes(trt)``.
Written to the documented IPluginV3 Python API; TensorRT-RTX's parser aborts on Python
plugins and no TensorRT here can execute engines, so enqueue is untested by execution.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

PLUGIN_NAME = "TrtdetDCNv2"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "trtdet"

#: Field name -> default value (all INT32 arrays).
FIELDS: dict[str, tuple[int, ...]] = {
    "stride": (1, 1),
    "padding": (1, 1),
    "dilation": (1, 1),
    "deformable_groups": (1,),
    "with_mask": (1,),
}

_creators: dict[int, Any] = {}  # keeps registered creators alive, by id of their module


def parse_fields(fields: Any) -> dict[str, tuple[int, ...]]:
    """Field values from a ``PluginFieldCollection`` (missing ones take their defaults)."""
    values = dict(FIELDS)
    for field in fields or ():
        if field.name in FIELDS:
            data = np.asarray(field.data).astype(np.int64).ravel()
            expected = len(FIELDS[field.name])
            if data.size == 1 and expected == 2:
                data = np.repeat(data, 2)
            if data.size != expected:
                raise ValueError(f"{PLUGIN_NAME} field {field.name!r}: expected {expected} ints, got {data.tolist()}")
            values[field.name] = tuple(int(v) for v in data)
    return values


@cache
def plugin_classes(trt: ModuleType) -> tuple[type, type]:
    """The (plugin, creator) classes for the TensorRT module ``trt``."""

    def field_collection(values: dict[str, tuple[int, ...]], owner: Any) -> Any:
        # A PluginField points into its numpy array without owning it: keep the arrays alive
        # on ``owner`` for as long as TensorRT may read the collection.
        arrays = {name: np.asarray(value, dtype=np.int32) for name, value in values.items()}
        collection = trt.PluginFieldCollection(
            [trt.PluginField(name, array, trt.PluginFieldType.INT32) for name, array in arrays.items()]
        )
        owner._field_arrays = arrays
        owner._field_collection = collection
        return collection

    class DCNv2Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        """Modulated deformable convolution (DCNv2) as a TensorRT plugin."""

        def __init__(self, values: dict[str, tuple[int, ...]] | None = None) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.num_outputs = 1
            self.values = dict(values or FIELDS)

        # -- core / build ---------------------------------------------------------------
        def get_capability_interface(self, type: Any) -> Any:  # noqa: A002 - TensorRT's name
            return self

        def get_output_data_types(self, input_types: list[Any]) -> list[Any]:
            return [input_types[0]]

        def get_output_shapes(self, inputs: list[Any], shape_inputs: list[Any], expr_builder: Any) -> list[Any]:
            # [N, Co, Ho, Wo]: N, Ho, Wo from the offsets, Co from the weight.
            output = trt.DimsExprs(inputs[2])
            output[1] = inputs[1][0]
            return [output]

        def supports_format_combination(self, pos: int, in_out: list[Any], num_inputs: int) -> bool:
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos == 0:
                return desc.type in (trt.DataType.FLOAT, trt.DataType.HALF)
            return desc.type == in_out[0].desc.type

        def configure_plugin(self, inputs: list[Any], outputs: list[Any]) -> None:
            pass

        def get_workspace_size(self, inputs: list[Any], outputs: list[Any]) -> int:
            return 0

        def get_valid_tactics(self) -> list[int]:
            return []

        # -- runtime --------------------------------------------------------------------
        def on_shape_change(self, inputs: list[Any], outputs: list[Any]) -> None:
            pass

        def set_tactic(self, tactic: int) -> None:
            pass

        def attach_to_context(self, context: Any) -> Any:
            return self.clone()

        def get_fields_to_serialize(self) -> Any:
            return field_collection(self.values, self)

        def enqueue(
            self,
            input_desc: list[Any],
            output_desc: list[Any],
            inputs: list[int],
            outputs: list[int],
            workspace: int,
            stream: int,
        ) -> None:
            from trtdet_centernet.dcn_cuda import dcn_forward_raw

            x_dims, w_dims, o_dims = (tuple(input_desc[i].dims) for i in range(3))
            dtype = "float16" if input_desc[0].type == trt.DataType.HALF else "float32"
            with_mask = bool(self.values["with_mask"][0])
            dcn_forward_raw(
                input=inputs[0],
                weight=inputs[1],
                offset=inputs[2],
                bias=inputs[3],
                mask=inputs[4] if with_mask else 0,
                output=outputs[0],
                batch=x_dims[0],
                channels=x_dims[1],
                height=x_dims[2],
                width=x_dims[3],
                out_channels=w_dims[0],
                out_height=o_dims[2],
                out_width=o_dims[3],
                kernel_h=w_dims[2],
                kernel_w=w_dims[3],
                stride=self.values["stride"],
                padding=self.values["padding"],
                dilation=self.values["dilation"],
                deformable_groups=self.values["deformable_groups"][0],
                dtype=dtype,
                stream=stream,
            )

        def clone(self) -> Any:
            return DCNv2Plugin(self.values)

    class DCNv2PluginCreator(trt.IPluginCreatorV3One):
        """Creates ``DCNv2Plugin`` from fields, at build time (parser) and deserialisation."""

        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.field_names = field_collection(FIELDS, self)

        def create_plugin(self, name: str, fields: Any, phase: Any) -> Any:
            return DCNv2Plugin(parse_fields(fields))

    return DCNv2Plugin, DCNv2PluginCreator


def register_dcn_plugin(trt: ModuleType) -> tuple[str, str, str]:
    """Register the creator with ``trt``'s plugin registry once; return (name, version, namespace)."""
    registry = trt.get_plugin_registry()
    if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        creator = plugin_classes(trt)[1]()
        if not registry.register_creator(creator, PLUGIN_NAMESPACE):
            raise RuntimeError(f"TensorRT refused to register the {PLUGIN_NAME} plugin creator")
        _creators[id(trt)] = creator
    return PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE
