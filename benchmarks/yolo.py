"""YOLO11n end to end on the GPU, one process, side by side: Ultralytics' predictor and trtdet's engines.

Every pipeline starts from decoded 1080p BGR frames in host memory and ends with detections on
the host (numpy boxes, scores, classes), at conf 0.25 / IoU 0.7, fp16.

* ``ultralytics`` — ``YOLO("yolo11n.yaml")`` with the shipped ONNX's trained weights copied in
  (the ONNX keeps the fused model's parameter names), ``predict(frames, half=True)``: Ultralytics'
  own preprocessing (CPU letterbox, rectangular at batch 1), network and NMS.
* ``trtdet torch`` — the eager backend (``backend="torch"``): trtdet's ONNX->torch module.
* ``trtdet inductor`` — the AOTInductor package compiled from the same ONNX; ``+graphs`` replays
  it in CUDA graphs (``cuda_graphs=True``).

    python benchmarks/yolo.py --batches 1 32 --iterations 50 --out benchmarks/results/yolo_h200.md
    python benchmarks/yolo.py --families --batches 1 32 --out benchmarks/results/families.md

``--families`` times issue 25's table instead (``benchmarks/yolo_families.py``): YOLO11n rect vs
square on 1080p, YOLO26n and RT-DETR-l at each batch, each beside Ultralytics' predictor.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import (  # benchmarks/timing.py (this script's folder is on sys.path)
    summarise,
    time_it,
    write_results,
)
from ultralytics_peer import ultralytics_predictor  # benchmarks/ultralytics_peer.py


def trtdet_detector(backend: str, batch: int, graphs: bool):
    import trtdet

    detector = trtdet.load("yolo", device="cuda", precision="fp16", backend=backend, batch=batch, cuda_graphs=graphs)

    def detect(frames):
        return [d.xyxy for d in detector.detect(frames)]

    return detector, detect


def stage_times(detector, frames, iterations: int) -> dict[str, float]:
    """Median per-stage milliseconds of ``detector`` on ``frames`` (synchronised after each stage)."""
    from trtdet.benchmark import benchmark

    result = benchmark(detector, frames, len(frames), iterations)
    return {"preprocess": result.preprocess_ms_median, "infer": result.infer_ms_median, "decode": result.decode_ms_median}


def main() -> None:
    import trtdet
    from trtdet_yolo.plugin import default_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--image-size", type=int, nargs=2, default=[1080, 1920], metavar=("H", "W"))
    parser.add_argument("--skip-ultralytics", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--families", action="store_true", help="issue 25's table (benchmarks/yolo_families.py)")
    parser.add_argument("--family", action="append", default=None, choices=("yolo11n", "yolo26n", "rtdetr-l"),
                        help="with --families: only these families' rows (each carries its own Ultralytics baseline)")
    args = parser.parse_args()

    photo = cv2.imread(str(Path(trtdet.__file__).parent / "data" / "sample.jpg"))
    image = cv2.resize(photo, (args.image_size[1], args.image_size[0]))
    rng = np.random.default_rng(0)
    frames = [np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)
              for _ in range(max(args.batches))]
    pinned = trtdet.pinned_frames(len(frames), *image.shape[:2])
    for target, frame in zip(pinned, frames, strict=True):
        target[...] = frame
    rows: list[tuple[str, int, list[float]]] = []
    notes: list[str] = []
    if args.families:
        from yolo_families import FAMILIES, family_rows

        rows = family_rows(frames, args.batches, args.iterations, default_model_path(),
                           tuple(args.family) if args.family else FAMILIES)
        write_table(args, rows, {}, ["YOLO26n and RT-DETR-l: random weights (seed 0), fp16; see benchmarks/yolo_families.py"],
                    "YOLO11n rect vs square, YOLO26n and RT-DETR-l")
        return
    if not args.skip_ultralytics:
        predict, note = ultralytics_predictor(default_model_path())
        notes.append(f"ultralytics: {note}")
        for batch in args.batches:
            rows.append(("ultralytics predictor fp16", batch, time_it(predict, frames[:batch], args.iterations)))
    stages = {}
    for label, backend, graphs in (("trtdet torch (eager)", "torch", False), ("trtdet inductor", "inductor", False),
                                   ("trtdet inductor + CUDA graphs", "inductor", True)):
        detector, detect = trtdet_detector(backend, max(args.batches), graphs)
        for batch in args.batches:
            rows.append((f"{label} fp16", batch, time_it(detect, frames[:batch], args.iterations)))
            stages[(label, batch)] = stage_times(detector, frames[:batch], max(10, args.iterations // 2))
        if graphs:  # the same frames decoded into pinned memory (trtdet.pinned_frames): no staging memcpy
            for batch in args.batches:
                name = f"{label}, pinned frames"
                rows.append((f"{name} fp16", batch, time_it(detect, pinned[:batch], args.iterations)))
                stages[(name, batch)] = stage_times(detector, pinned[:batch], max(10, args.iterations // 2))
            rows += pipeline_graph_off_rows(detector, detect, label, args.batches, frames, pinned, args.iterations, notes)
        detector.close()

    write_table(args, rows, stages, notes, "YOLO11n")


def pipeline_graph_off_rows(detector, detect, label, batches, frames, pinned, iterations, notes) -> list:
    """The batches a whole-pipeline CUDA graph runs (issue 26), timed again with it off on the same detector."""
    graphs = detector.pipeline_graphs
    if graphs is None:
        notes.append(f"{label}: no whole-pipeline CUDA graph for this detector")
        return []
    rows = []
    threads = graphs.copy_threads
    if threads > 1 and 1 in batches:  # what copying a frame into staging on several threads gives
        graphs.copy_threads = 1
        try:
            rows.append((f"{label}, staging copy on one thread fp16", 1, time_it(detect, frames[:1], iterations)))
        finally:
            graphs.copy_threads = threads
    graphs.enabled = False
    try:
        for batch in [b for b in batches if b <= graphs.max_batch]:
            rows.append((f"{label}, whole-pipeline graph off fp16", batch, time_it(detect, frames[:batch], iterations)))
            rows.append((f"{label}, pinned frames, whole-pipeline graph off fp16", batch, time_it(detect, pinned[:batch], iterations)))
    finally:
        graphs.enabled = graphs.disabled_reason is None
    state = f"off ({graphs.disabled_reason})" if graphs.disabled_reason else f"on, {len(graphs.cache)} keys captured"
    notes.append(f"{label}: batches of up to {graphs.max_batch} images run as one whole-pipeline CUDA graph ({state}); "
                 f"the 'graph off' rows time the same detector with it off; a frame is copied into staging by {threads} threads")
    return rows


def write_table(args, rows, stages, notes, title: str) -> None:
    """The markdown table (and JSON) of ``rows``; the last column compares with the Ultralytics row of the
    same model and batch."""
    device_name = torch.cuda.get_device_name()
    families = getattr(args, "families", False)

    def model_of(name: str) -> str:  # "yolo26n trtdet ..." -> "yolo26n"; one model in the plain table
        return name.split(" ultralytics")[0].split(" trtdet")[0] if families else ""

    peer: dict[tuple[str, int], float] = {}
    for name, b, t in rows:  # the first Ultralytics row of a model and batch (YOLO11n: its default, rect)
        if "ultralytics" in name:
            peer.setdefault((model_of(name), b), statistics.median(t))
    lines = [
        f"# {title} end to end, {args.image_size[1]}x{args.image_size[0]} frames in host memory, detections on the host",
        "",
        f"Device: {device_name}; torch {torch.__version__}. Command: `python benchmarks/yolo.py --batches "
        f"{' '.join(map(str, args.batches))} --iterations {args.iterations}{' --families' if families else ''}"
        f"{''.join(f' --family {f}' for f in (getattr(args, 'family', None) or []))}`",
        "",
        "| pipeline | batch | median ms/call | min ms | images/s | vs ultralytics |",
        "|---|---|---|---|---|---|",
    ]
    results = []
    for name, b, t in rows:
        row, record = summarise(name, b, t, peer.get((model_of(name), b)))
        lines.append(row)
        results.append(record)
    if stages:
        lines += ["", "Per stage (median ms, each stage synchronised, so they sum to more than the overlapped call):", "",
                  "| pipeline | batch | preprocess | network | decode + NMS |", "|---|---|---|---|---|"]
        for (label, b), s in stages.items():
            lines.append(f"| {label} | {b} | {s['preprocess']:.3f} | {s['infer']:.3f} | {s['decode']:.3f} |")
    lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    write_results(args.out, text, {"device": device_name, "results": results,
        "stages": [{"pipeline": k[0], "batch": k[1], **v} for k, v in stages.items()]})


if __name__ == "__main__":
    main()
