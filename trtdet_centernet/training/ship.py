"""Turn a training checkpoint into the shipped ONNX: fp16 weights, fp32 input/output.

``python -m trtdet_centernet.training.ship CKPT [--output trtdet_centernet/assets/centernet.onnx]``

The exported fp32 graph is rewritten so every float initializer is stored as fp16 and
cast back to fp32 by a ``Cast`` node: half the file size, and ONNX Runtime's CPU provider
(which has no fp16 ``DeformConv``) folds the casts at load time and runs in fp32. The class
names (``names`` metadata) are the synthetic shape classes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtdet_centernet.training.synthetic import CLASS_NAMES

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "assets" / "centernet.onnx"


def weights_to_fp16(proto: onnx.ModelProto, min_elements: int = 16) -> onnx.ModelProto:
    """Store float32 initializers of at least ``min_elements`` as fp16 behind ``Cast`` nodes."""
    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            continue
        name = init.name
        half = numpy_helper.from_array(array.astype(np.float16), name + "_fp16")
        init.CopyFrom(half)
        casts.append(
            helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT, name=name + "_cast")
        )
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return proto


def ship(checkpoint: Path, output: Path, input_size: tuple[int, int] = (512, 512)) -> Path:
    """Export ``checkpoint`` at ``input_size`` (dynamic batch) to ``output`` with fp16 weights."""
    from trtdet_centernet.checkpoint import build_from_checkpoint
    from trtdet_centernet.export import export_model, finalize

    model, num_classes, _depth = build_from_checkpoint(checkpoint)
    if num_classes != len(CLASS_NAMES):
        raise ValueError(f"{checkpoint}: {num_classes} classes, the shape dataset has {len(CLASS_NAMES)}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_model(
            model, Path(tmp) / "fp32.onnx", input_size=input_size, dynamic_batch=True, class_names=CLASS_NAMES
        )
        proto = onnx.load(str(fp32))
    proto = weights_to_fp16(proto)
    finalize(proto, CLASS_NAMES)
    proto.doc_string = (
        "CenterNet ResNet-DCN-18 trained on trtdet's procedural shape scenes (trtdet_centernet.training)"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(output))
    return output


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trtdet_centernet.training.ship", description=__doc__.split("\n")[0]
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--input-size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    args = p.parse_args(argv)
    path = ship(args.checkpoint, args.output, tuple(args.input_size))
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
