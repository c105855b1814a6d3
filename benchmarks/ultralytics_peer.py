"""Ultralytics' predictor on YOLO11n with the shipped ONNX's trained weights: the peer the YOLO benchmarks time."""

from __future__ import annotations

from pathlib import Path

import torch


def ultralytics_predictor(onnx_path: Path, **options):
    """Ultralytics' predictor on YOLO11n with the ONNX's weights; returns (predict fn, weights note).

    ``options`` go to ``predict`` (e.g. ``rect=False``)."""
    import onnx
    from onnx import numpy_helper
    from ultralytics import YOLO

    yolo = YOLO("yolo11n.yaml")
    yolo.model.fuse()
    state = yolo.model.state_dict()
    loaded = {}
    for init in onnx.load(str(onnx_path)).graph.initializer:
        if init.name in state and tuple(state[init.name].shape) == tuple(init.dims):
            loaded[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    yolo.model.load_state_dict(loaded, strict=False)
    note = f"trained weights ({len(loaded)} of {len(state)} tensors from the ONNX)"

    def predict(frames):
        results = yolo.predict(frames, imgsz=640, half=True, device=0, conf=0.25, iou=0.7, verbose=False, **options)
        return [r.boxes.data.cpu().numpy() for r in results]

    return predict, note
