"""The centernet model plugin: registers the CenterNet ResNet-DCN (ctdet) model object and its ONNX ops.

Nothing here imports torch: running an exported ONNX file needs only numpy and
onnxruntime. The exporter and legacy converter import torch/onnx when called.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtdet.coco import COCO_NAMES
from trtdet.context import RunContext
from trtdet.errors import ModelError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.postprocess.decoder import Decoder
from trtdet_centernet import constants

_ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = _ASSETS / "centernet.onnx"
SAMPLE_IMAGE = _ASSETS / "sample.jpg"


def default_model_path() -> Path:
    """The shipped default ONNX, when the package ships one."""
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise ModelError("centernet: no default model is shipped; pass --weights CKPT or --onnx F")


def sample_image_path() -> Path | None:
    """The plugin's sample photo, or None to use the core's."""
    return SAMPLE_IMAGE if SAMPLE_IMAGE.is_file() else None


def export_onnx(weights: Path, output: Path, *, input_size: tuple[int, int], dynamic_batch: bool) -> Path:
    """Lazy wrapper around ``trtdet_centernet.export.export_onnx`` (imports torch on use)."""
    from trtdet_centernet.export import export_onnx as export

    return export(weights, output, input_size=input_size, dynamic_batch=dynamic_batch)


def torch_model(weights: Path) -> Any:
    """The torch backend's network for an official-format checkpoint (eval mode, fused output,
    BatchNorm folded, heads merged, offset convolutions padded: inference only)."""
    import json

    from trtdet_centernet.checkpoint import build_from_checkpoint
    from trtdet_centernet.network import prepare_for_inference

    model, _num_classes, _depth = build_from_checkpoint(weights)
    prepare_for_inference(model)
    model.trtdet_metadata = {"names": json.dumps(list(model.class_names)), "model": "centernet"}
    return model


def engine_variant() -> str:
    """``dcn=triton`` or ``dcn=gather``: the DCNv2 kernel a compiled CenterNet network calls."""
    from trtdet_centernet.dcn import cuda_variant

    return f"dcn={cuda_variant()}"


def convert_legacy_onnx(src: Path, dst: Path) -> Path:
    """Lazy wrapper around ``trtdet_centernet.legacy.convert_legacy_onnx``."""
    from trtdet_centernet.legacy import convert_legacy_onnx as convert

    return convert(src, dst)


CENTERNET = ModelSpec(
    name="centernet",
    class_names=COCO_NAMES,
    input_size=constants.INPUT_SIZE,
    channel_order="BGR",
    mean=constants.MEAN,
    std=constants.STD,
    border_value=constants.BORDER_VALUE,
    stride=constants.STRIDE,
    input_multiple=constants.INPUT_MULTIPLE,
    num_channels=4 + 2 * len(COCO_NAMES),
    # Upstream's demo shows detections above vis_thresh 0.3; its COCO evaluation keeps all
    # K=100 (pass --conf 0.001 or so for mAP).
    conf_threshold=constants.DEFAULT_THRESHOLD,
    iou_threshold=None,
    max_detections=constants.DEFAULT_K,
    description="CenterNet ctdet ResNet-DCN (xingyizhou/CenterNet), DCNv2 as ONNX DeformConv",
    # no official checkpoint is reachable from this build environment: the shipped one was trained here
    demo_weights="synthetic shapes (circles, squares, stars, ...), not COCO objects; pass --weights for a real model",
    default_model=default_model_path,
    exporter=export_onnx,
    onnx_converter=convert_legacy_onnx,
    torch_model=torch_model,
    engine_variant=engine_variant,
    sample_image=sample_image_path,
)


def host_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """The numpy decoder (CPU outputs; on a GPU without numba the core wraps it in ``HostDecoder``)."""
    from trtdet_centernet.decode import CenterNetDecoder

    return CenterNetDecoder.for_spec(spec)


def cuda_decoder(spec: ModelSpec, context: RunContext) -> Decoder:
    """The numba.cuda decoder (imports numba: an ImportError makes the core use ``host_decoder``)."""
    from trtdet_centernet.cuda_decode import CudaCenterNetDecoder

    return CudaCenterNetDecoder.for_spec(spec)


CENTERNET_MODEL = Model(CENTERNET, decoder=host_decoder, cuda_decoder=cuda_decoder)


@hookimpl
def trtdet_register_models(register: Callable[[Model], None]) -> None:
    register(CENTERNET_MODEL)


def _deform_conv(node: Any) -> Any:
    from trtdet_centernet.onnx_torch import convert_deform_conv

    return convert_deform_conv(node)


@hookimpl
def trtdet_onnx_torch_ops(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """ONNX ``DeformConv`` (opset 19) for trtdet's ONNX->torch converter."""
    register("DeformConv", _deform_conv)
