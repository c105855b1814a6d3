"""The DCNv2 TensorRT plugin: a Python ``IPluginV3`` whose enqueue runs trtdet's CUDA DCNv2 kernel.

Plugin ``TrtdetDCNv2`` version ``1`` in namespace ``trtdet``. Inputs (all linear, all float32
or all float16): X [N, C, H, W], weight [Co, C, kh, kw], offset [N, 2*G*kh*kw, Ho, Wo],
bias [Co], and mask [N, G*kh*kw, Ho, Wo] when ``with_mask`` is 1; output [N, Co, Ho, Wo].
Fields (INT32, serialised into the engine): ``stride``, ``padding``, ``dilation`` (each
[h, w]), ``deformable_groups``, ``with_mask``. ONNX nodes of that op type carry the same
names as attributes, which the TensorRT ONNX parser turns into these fields.

The classes subclass the TensorRT module chosen at run time (``tensorrt`` or
``tensorrt_rtx_bindings``), so they are made per module by ``plugin_classes(trt)``.
Enqueue calls ``trtdet_centernet.dcn_cuda.dcn_forward_raw`` on TensorRT's pointers and stream,
with the plugin workspace as its column buffer. Written to the documented IPluginV3 Python
API; TensorRT-RTX's parser aborts on Python plugins and no TensorRT here can execute
engines, so enqueue is untested by execution (the kernel is tested on its own).
"""

from __future__ import annotations

import contextlib
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch

    import trtdet.cuda.runtime as cuda_runtime
    import trtdet_centernet.dcn_cuda as dcn_cuda
else:  # numba and torch load when TensorRT first calls the plugin, not when it is registered
    torch = lazy_import("torch")
    cuda_runtime = lazy_import("trtdet.cuda.runtime")
    dcn_cuda = lazy_import("trtdet_centernet.dcn_cuda")

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
                raise ValueError(
                    f"{PLUGIN_NAME} field {field.name!r}: expected {expected} ints, got {data.tolist()}"
                )
            values[field.name] = tuple(int(v) for v in data)
    return values


def field_collection(trt: ModuleType, values: dict[str, tuple[int, ...]], owner: Any) -> Any:
    """``values`` as a TensorRT ``PluginFieldCollection`` of INT32 fields.

    A PluginField points into its numpy array without owning it: the arrays are kept alive
    on ``owner`` for as long as TensorRT may read the collection.
    """
    arrays = {name: np.asarray(value, dtype=np.int32) for name, value in values.items()}
    collection = trt.PluginFieldCollection(
        [trt.PluginField(name, array, trt.PluginFieldType.INT32) for name, array in arrays.items()]
    )
    owner._field_arrays = arrays
    owner._field_collection = collection
    return collection


def dcn_shape(values: dict[str, tuple[int, ...]], x_dims: Any, w_dims: Any) -> Any:
    """The ``DcnShape`` of a call: sizes from the input and weight dims, the rest from the plugin's fields."""
    (sh, sw), (ph, pw), (dh, dw) = values["stride"], values["padding"], values["dilation"]
    return dcn_cuda.DcnShape(
        batch=int(x_dims[0]),
        in_channels=int(x_dims[1]),
        height=int(x_dims[2]),
        width=int(x_dims[3]),
        out_channels=int(w_dims[0]),
        kernel_h=int(w_dims[2]),
        kernel_w=int(w_dims[3]),
        stride_h=sh,
        stride_w=sw,
        pad_h=ph,
        pad_w=pw,
        dilation_h=dh,
        dilation_w=dw,
        deformable_groups=values["deformable_groups"][0],
    )


def workspace_parts(values: dict[str, tuple[int, ...]], shape: Any, itemsize: int) -> tuple[int, int]:
    """Workspace layout: bytes of a ones-mask (layers without a mask input), then im2col columns."""
    ones = 0 if values["with_mask"][0] else shape.batch * shape.deformable_groups * shape.taps
    ones *= shape.out_h * shape.out_w * itemsize
    return (ones + 255) // 256 * 256, dcn_cuda.dcn_workspace_bytes(shape, itemsize)


def ones_mask(workspace: int, shape: Any, dtype: Any, stream: int) -> int:
    """DeformConv without a mask (DCNv1) is DCNv2 with mask 1: fill one in the workspace."""
    size = (shape.batch, shape.deformable_groups * shape.taps, shape.out_h, shape.out_w)
    on_stream = contextlib.nullcontext() if cuda_runtime.SIMULATOR else torch.cuda.stream(torch.cuda.ExternalStream(stream))
    with on_stream:
        cuda_runtime.torch_from_pointer(workspace, size, dtype).fill_(1)
    return workspace


def run_dcn(
    values: dict[str, tuple[int, ...]], half: bool, dims: tuple[Any, Any], inputs: list[int], output: int,
    workspace: int, stream: int,
) -> None:  # fmt: skip
    """The plugin's enqueue: the DCNv2 kernel on TensorRT's pointers (X, weight, offset, bias[, mask]) and stream.

    ``dims``: the input's and the weight's dims; the workspace holds the ones-mask (layers without a
    mask) and then the kernel's columns.
    """
    dtype, itemsize = (np.float16, 2) if half else (np.float32, 4)
    shape = dcn_shape(values, tuple(dims[0]), tuple(dims[1]))
    ones_bytes, columns_bytes = workspace_parts(values, shape, itemsize)
    mask = inputs[4] if values["with_mask"][0] else ones_mask(workspace, shape, dtype, stream)
    dcn_cuda.dcn_forward_raw(
        inputs[0], inputs[2], mask, inputs[1], inputs[3], output, shape, dtype, stream,
        workspace_ptr=workspace + ones_bytes, workspace_bytes=columns_bytes,
    )  # fmt: skip


@cache
def plugin_classes(trt: ModuleType) -> tuple[type, type]:
    """The (plugin, creator) classes for the TensorRT module ``trt``."""
    plugin = _plugin_class(trt)
    return plugin, _creator_class(trt, plugin)


def _plugin_class(trt: ModuleType) -> type:
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
            # Python plugins must initialise every attribute; the configuration (fields) names
            # the plugin's timing-cache entry, so identical DCN layers are timed once.
            config = ";".join(f"{k}={','.join(map(str, v))}" for k, v in sorted(self.values.items()))
            self.timing_cache_id = f"{PLUGIN_NAME}:{config}"
            self.metadata_string = self.timing_cache_id
            self.format_combination_limit = trt.IPluginV3OneBuild.DEFAULT_FORMAT_COMBINATION_LIMIT

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
            itemsize = 2 if inputs[0].desc.type == trt.DataType.HALF else 4
            shape = dcn_shape(self.values, tuple(inputs[0].max), tuple(inputs[1].max))
            return sum(workspace_parts(self.values, shape, itemsize))

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
            return field_collection(trt, self.values, self)

        def enqueue(
            self, input_desc: list[Any], output_desc: list[Any], inputs: list[int], outputs: list[int],
            workspace: int, stream: int,
        ) -> None:  # fmt: skip
            half = input_desc[0].type == trt.DataType.HALF
            run_dcn(self.values, half, (input_desc[0].dims, input_desc[1].dims), inputs, outputs[0], workspace, stream)

        def clone(self) -> Any:
            return DCNv2Plugin(self.values)

    return DCNv2Plugin


def _creator_class(trt: ModuleType, plugin: type) -> type:
    class DCNv2PluginCreator(trt.IPluginCreatorV3One):
        """Creates ``DCNv2Plugin`` from fields, at build time (parser) and deserialisation."""

        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.field_names = field_collection(trt, FIELDS, self)

        def create_plugin(self, name: str, fields: Any, phase: Any) -> Any:
            return plugin(parse_fields(fields))

    return DCNv2PluginCreator


def register_dcn_plugin(trt: ModuleType) -> tuple[str, str, str]:
    """Register the creator with ``trt``'s plugin registry once; return (name, version, namespace)."""
    registry = trt.get_plugin_registry()
    if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        creator = plugin_classes(trt)[1]()
        if not registry.register_creator(creator, PLUGIN_NAMESPACE):
            raise RuntimeError(f"TensorRT refused to register the {PLUGIN_NAME} plugin creator")
        _creators[id(trt)] = creator
    return PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE
