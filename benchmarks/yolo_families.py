"""Issue 25's timings on the GPU, side by side with Ultralytics' predictor (``benchmarks/yolo.py --families``).

* YOLO11n on 1080p frames, rect vs square. Ultralytics: ``predict(rect=True)`` (its default: the
  frames share a shape, so ``LetterBox(auto=True)`` gives 384x640) and ``rect=False`` (640x640).
  trtdet rect is the default letterbox: the inductor backend runs each batch on the package of
  its shape bucket (``trtdet.engines.buckets``: 384x640 for 1080p frames, compiled once or taken
  from the cache before timing); square is ``letterbox="square"``, the usual 640x640 package.
* YOLO26n (``yolo26n.yaml``) and RT-DETR-l (``rtdetr-l.yaml``), random weights (seed 0: the
  time does not depend on them), batch 1 and 32. Ultralytics ``predict`` on the PyTorch model
  (``half=True``); trtdet on the ONNX Ultralytics exports (``dynamic=True``; YOLO26 with
  ``nms=False``: the end-to-end head) through the inductor backend, fp16, CUDA graphs, and for
  RT-DETR also the eager torch backend (its ONNX converts to torch since the device fix).

Needs ultralytics importable (on the GPU machine: ``pip install --no-deps`` of a carried wheel).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timing import time_it  # benchmarks/timing.py (this script's folder is on sys.path)


def _ultralytics_predict(model: Any, **options: Any):
    def predict(frames):
        results = model.predict(frames, imgsz=640, half=True, device=0, conf=0.25, iou=0.7, verbose=False, **options)
        return [r.boxes.data.cpu().numpy() for r in results]

    return predict


def _trtdet(model: str, onnx: Path | None, batch: int, frames: list[np.ndarray], backend: str = "inductor", **options: Any):
    """The detector and its timed call; one warm-up call on ``frames`` first, so a rect bucket's
    package is compiled (or loaded from the cache) before any timing."""
    import trtdet

    detector = trtdet.load(model, onnx=onnx, device="cuda", precision="fp16", backend=backend, batch=batch,
                           cuda_graphs=True, **options)

    def detect(frames):
        return [d.xyxy for d in detector.detect(frames)]

    detect(frames[:1])
    return detector, detect


def export(model: Any, folder: Path, name: str, **options: Any) -> Path:
    target = folder / f"{name}.onnx"
    # simplify=False: onnxslim is not on the GPU machine, and Ultralytics would try to install it
    shutil.move(model.export(format="onnx", dynamic=True, imgsz=640, simplify=False, **options), target)
    return target


FAMILIES = ("yolo11n", "yolo26n", "rtdetr-l")


class _Rows(list):
    """The table's rows, each printed as it is timed, so a run cut off by a time limit still shows them."""

    def append(self, row: tuple[str, int, list[float]]) -> None:
        name, batch, times = row
        print(f"row: {name} | batch {batch} | median {1e3 * float(np.median(times)):.2f} ms", flush=True)
        super().append(row)


def family_rows(frames: list[np.ndarray], batches: list[int], iterations: int, yolo11n: Path,
                families: tuple[str, ...] = FAMILIES) -> list[tuple[str, int, list[float]]]:
    """(pipeline, batch, seconds per call) rows for the issue's table, for the ``families`` named (each
    family's rows carry their own Ultralytics baseline, so a table may be timed in parts)."""
    from ultralytics import RTDETR, YOLO

    rows: list[tuple[str, int, list[float]]] = _Rows()
    big = max(batches)
    if "yolo11n" in families:
        _yolo11n_rows(rows, frames, batches, iterations, yolo11n, big)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, cls, cfg, options, trtdet_model in (
            ("yolo26n", YOLO, "yolo26n.yaml", {"nms": False}, "yolo"),
            ("rtdetr-l", RTDETR, "rtdetr-l.yaml", {}, "rtdetr"),
        ):
            if name in families:
                _family_rows(rows, frames, batches, iterations, big, folder, name, cls, cfg, options, trtdet_model)
    return list(rows)


def _yolo11n_rows(rows, frames, batches, iterations, yolo11n, big) -> None:
    """YOLO11n rect vs square, trained weights (the shipped ONNX, as benchmarks/yolo.py loads them)."""
    from ultralytics_peer import ultralytics_predictor

    for rect in (True, False):
        predict, _ = ultralytics_predictor(yolo11n, rect=rect)
        for batch in batches:
            rows.append((f"yolo11n ultralytics predictor rect={rect}", batch, time_it(predict, frames[:batch], iterations)))
    for label, letterbox in (("rect (per-bucket package, 384x640)", "rect"), ("square (640x640)", "square")):
        detector, detect = _trtdet("yolo", None, big, frames, letterbox=letterbox)
        for batch in batches:
            rows.append((f"yolo11n trtdet inductor+graphs {label}", batch, time_it(detect, frames[:batch], iterations)))
        detector.close()


def _family_rows(rows, frames, batches, iterations, big, folder, name, cls, cfg, options, trtdet_model) -> None:
    """One family built from Ultralytics' yaml (seed 0): its predictor, then trtdet on its ONNX export."""
    torch.manual_seed(0)
    model = cls(cfg)
    onnx = export(model, folder, name, **options)
    torch.manual_seed(0)
    predict = _ultralytics_predict(cls(cfg))
    for batch in batches:
        rows.append((f"{name} ultralytics predictor", batch, time_it(predict, frames[:batch], iterations)))
    for backend in ("inductor", "torch") if trtdet_model == "rtdetr" else ("inductor",):
        try:
            detector, detect = _trtdet(trtdet_model, onnx, big, frames, backend=backend)
        except Exception as exc:  # noqa: BLE001 - a family trtdet cannot compile yet: say so, time the rest
            print(f"{name}: no trtdet {backend} row: {str(exc).splitlines()[0]}", flush=True)
            continue
        # the backend that actually runs: inductor falls back to eager torch where it cannot compile
        if backend == "torch":
            label = "torch (eager)+graphs"
        else:
            label = "inductor+graphs" if detector.backend == "inductor" else f"{detector.backend} (inductor fell back)"
        for batch in batches:
            rows.append((f"{name} trtdet {label}", batch, time_it(detect, frames[:batch], iterations)))
        detector.close()
