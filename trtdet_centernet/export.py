"""Export CenterNet ResNet-DCN to ONNX with DCN as the standard ``DeformConv`` (opset 19).

The graph has one input ``images`` ``[B, 3, H, W]`` (BGR, normalised) and one output
``output`` ``[B, H/4*W/4, 4 + 2*C]`` (channel-last ``[reg, wh, hm, pool_hm]``). Metadata:
``model=centernet``, ``names`` (JSON list of class names), ``stride``, ``num_classes``.

It uses torch's TorchScript exporter (``dynamo=False``), where DCNv2's autograd function
supplies a ``DeformConv`` symbolic; still available (deprecated) in torch 2.13.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from trtdet.errors import ModelError, UsageError
from trtdet.lazy import lazy_import
from trtdet_centernet.coco_names import class_names_for
from trtdet_centernet.constants import STRIDE

if TYPE_CHECKING:
    import torch

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

OPSET = 19
#: IR version 9 is the one that goes with opset 19; onnx 1.23 writes a newer default that
#: older onnxruntime builds (e.g. 1.30 on the GPU machine) reject.
IR_VERSION = 9
INPUT_NAME = "images"
OUTPUT_NAME = "output"
#: The ResNet trunk downsamples 32x and the three deconvs upsample 8x.
SIZE_MULTIPLE = 32


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    if len(input_size) != 2:
        raise UsageError(f"input size must be (H, W), got {tuple(input_size)}")
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise UsageError(
            f"CenterNet input size must be positive multiples of {SIZE_MULTIPLE}, got {height}x{width}"
        )
    return height, width


def export_model(
    model: torch.nn.Module,
    output: Path | str,
    *,
    input_size: Sequence[int] = (512, 512),
    dynamic_batch: bool = False,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Export an in-memory CenterNet (``forward`` -> fused output) to ``output``; return its path.

    ``class_names`` defaults to COCO names for 80 classes, else ``class_0..``; the count is
    checked against the model's output channels.
    """
    output = Path(output)
    height, width = _check_input_size(input_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dummy = torch.zeros(1, 3, height, width, device=device)
    try:
        with torch.no_grad():
            channels = int(model(dummy).shape[-1])
        num_classes = (channels - 4) // 2
        names = tuple(class_names) if class_names is not None else class_names_for(num_classes)
        if len(names) != num_classes:
            raise UsageError(f"{len(names)} class names given for a model with {num_classes} classes")
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
            raw = Path(tmp) / "raw.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(raw),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                    if dynamic_batch
                    else None,
                    do_constant_folding=True,
                )
            proto = onnx.load(str(raw))
            finalize(proto, names)
            staged = Path(tmp) / "final.onnx"
            onnx.save(proto, str(staged))
            os.replace(staged, output)
    finally:
        model.train(was_training)
    return output


def finalize(proto: onnx.ModelProto, class_names: Sequence[str]) -> None:
    """Stamp IR version and metadata on an exported CenterNet graph and check it."""
    proto.ir_version = IR_VERSION
    metadata = {
        "model": "centernet",
        "names": json.dumps(list(class_names)),
        "num_classes": str(len(class_names)),
        "stride": str(STRIDE),
    }
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "trtdet-centernet"
    onnx.checker.check_model(proto, full_check=True)


def export_onnx(
    weights: Path, output: Path, *, input_size: tuple[int, int] = (512, 512), dynamic_batch: bool = False
) -> Path:
    """``trtdet export`` for CenterNet: official-format checkpoint ``weights`` -> ONNX ``output``."""
    from trtdet_centernet.checkpoint import build_from_checkpoint

    model, num_classes, _depth = build_from_checkpoint(weights)
    try:
        return export_model(
            model,
            output,
            input_size=input_size,
            dynamic_batch=dynamic_batch,
            class_names=model.class_names,
        )
    except (UsageError, ModelError):
        raise
    except Exception as exc:  # an exporter failure is about this checkpoint's graph
        raise ModelError(
            f"{weights}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc
