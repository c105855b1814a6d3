"""Ultralytics ``.pt`` checkpoints to ONNX, through Ultralytics' own exporter (optional: AGPL).

``trtdet run --model yolo --weights best.pt`` (or ``--model rtdetr``) exports the checkpoint
once with ``model.export(format="onnx", dynamic=True)`` -- dynamic height and width, so the
rect letterbox applies as it does for the ``.pt`` in Ultralytics; otherwise Ultralytics'
defaults, so YOLO26/YOLOv10 get the one-to-many head that ``predict`` on the ``.pt`` runs by
default in 8.4.190 (its ``AutoBackend`` selects the end-to-end head only with ``nms=False``;
for that, export with ``nms=False`` yourself and pass ``--onnx``) -- and trtdet caches the
file by the checkpoint's sha256 (``trtdet.exports.export_cached``). Class names travel in the
ONNX metadata. Without the ``ultralytics`` package (``pip install 'trtdet[ultralytics]'``) it
stops with one line saying how to export the ONNX and pass ``--onnx``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from trtdet.errors import ModelError, UsageError


def missing_ultralytics_message(weights: Path) -> str:
    """The one line shown when a ``.pt`` is given without Ultralytics installed."""
    return (
        f"{weights}: exporting an Ultralytics checkpoint needs the ultralytics package "
        f"(pip install 'trtdet[ultralytics]', AGPL-3.0); or export it yourself with "
        f"`yolo export model={weights} format=onnx dynamic=True` and pass --onnx {weights.with_suffix('.onnx')}"
    )


def checkpoint_family(network: Any) -> str | None:
    """``rtdetr`` or ``yolo`` for an Ultralytics detection network (by its class and bases), else None."""
    names = {cls.__name__ for cls in type(network).__mro__}
    if "RTDETRDetectionModel" in names:
        return "rtdetr"
    if "DetectionModel" in names:
        return "yolo"
    return None


def make_exporter(model_name: str):
    """The ``ModelSpec.exporter`` of ``model_name`` (``yolo`` or ``rtdetr``)."""

    def export(weights: Path, output: Path, *, input_size: tuple[int, int], dynamic_batch: bool) -> Path:
        return export_checkpoint(model_name, weights, output, input_size=input_size)

    return export


def export_checkpoint(model_name: str, weights: Path, output: Path, *, input_size: tuple[int, int]) -> Path:
    """Export an Ultralytics checkpoint of family ``model_name`` to ``output`` (dynamic ONNX).

    Ultralytics' messages (its import warnings, the export log) go to stderr: ``trtdet run
    --json -`` owns stdout.
    """
    weights = Path(weights)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import ultralytics  # noqa: F401
        except ImportError:
            raise UsageError(missing_ultralytics_message(weights)) from None
        return _export(model_name, weights, Path(output), input_size)


def _export(model_name: str, weights: Path, output: Path, input_size: tuple[int, int]) -> Path:
    from ultralytics import RTDETR, YOLO
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        try:
            model = YOLO(str(weights), task="detect")
        except Exception as exc:  # torch.load and Ultralytics raise many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{weights}: Ultralytics cannot load it: {first}") from exc
        family = checkpoint_family(model.model)
        if family is None or getattr(model, "task", "detect") != "detect":
            raise ModelError(f"{weights}: not an Ultralytics detection checkpoint (task {getattr(model, 'task', '?')!r}, "
                             f"network {type(model.model).__name__})")
        if family != model_name:
            raise UsageError(f"{weights}: is an Ultralytics {family} checkpoint: run it with --model {family}")
        if family == "rtdetr":
            model = RTDETR(str(weights))
        imgsz = max(int(input_size[0]), int(input_size[1]))
        # Ultralytics' default export, as `predict` on the .pt runs by default (8.4.190: its
        # AutoBackend selects the one-to-one head only with nms=False).
        exported = Path(model.export(format="onnx", dynamic=True, imgsz=imgsz, device="cpu", verbose=False))
    finally:
        LOGGER.setLevel(level)
    shutil.move(str(exported), output)
    return output
