"""YOLO11n from 1080p frames in ordinary (pageable) memory: what the staging copy costs, by copy threads.

One process, one detector (inductor + CUDA graphs, fp16, conf 0.25 / IoU 0.7), detections on the
host; Ultralytics' predictor on the same frames in the same run for the ratio. Rows per batch:

* ``pinned frames`` -- the frames in ``trtdet.pinned_frames``: no staging memcpy (the floor);
* ``pageable, one copy + one upload`` -- the staging copy on the calling thread, then one
  host-to-device transfer (what batch 1 did before the copy went in pieces);
* ``pageable, pieces on the calling thread`` -- the copy in pieces, each uploaded as soon as it is
  filled (``trtdet.preprocess.host_copy``), all copied by the calling thread;
* ``pageable, N copy threads`` -- the same pieces shared by N threads (the caller one of them),
  at every batch size (N is what ``TRTDET_COPY_THREADS`` sets);
* ``pageable, default`` -- what a detector does unless told: pieces on the calling thread below
  8 MB (one 1080p frame), shared by half the usable cores (1-8) from 8 MB on;
* ``all rows`` / ``rows read`` -- every row copied, or only the rows the resize letterbox reads
  with a nonzero weight (``cuda_resize.resize_row_band``: one in three for 1080p -> 640; the
  upload still moves whole frames);
* ``submit(), lone frame`` -- ``detector.submit(frame).result()`` with nothing else queued (the
  batching worker must not hold a lone request back), default copy threads.

    python benchmarks/pageable_frames.py --out benchmarks/results/pageable_h100.md

The host-only split (np.copyto of one frame on 1/2/4/8 threads, no GPU) is in
``benchmarks/transfer_probe.py``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import summarise, time_it, write_results  # benchmarks/timing.py (this folder is on sys.path)


def main() -> None:
    import trtdet
    from trtdet.preprocess.host_copy import copy_threads, usable_cores
    from trtdet_yolo.plugin import default_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--iterations", type=int, default=200, help="calls per row at batch 1 (batch 32: a quarter)")
    parser.add_argument("--skip-ultralytics", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    photo = cv2.imread(str(Path(trtdet.__file__).parent / "data" / "sample.jpg"))
    image = cv2.resize(photo, (1920, 1080))
    rng = np.random.default_rng(0)
    frames = [np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)
              for _ in range(max(args.batches))]
    pinned = trtdet.pinned_frames(len(frames), 1080, 1920)
    for target, frame in zip(pinned, frames, strict=True):
        target[...] = frame

    def iterations(batch: int) -> int:
        return args.iterations if batch == 1 else max(10, args.iterations // 4)

    rows: list[tuple[str, int, list[float]]] = []
    notes = [f"usable cores {usable_cores()}; default copy threads {copy_threads()}"]
    if not args.skip_ultralytics:
        from ultralytics_peer import ultralytics_predictor  # benchmarks/ultralytics_peer.py

        predict, note = ultralytics_predictor(default_model_path())
        notes.append(f"ultralytics: {note}")
        for batch in args.batches:
            rows.append(("ultralytics predictor fp16", batch, time_it(predict, frames[:batch], iterations(batch))))

    detector = trtdet.load("yolo", device="cuda", precision="fp16", backend="inductor", batch=max(args.batches),
                           cuda_graphs=True)
    pre = detector.preprocessor
    default_threads = pre._copy_threads

    def detect(batch_frames):
        return [d.xyxy for d in detector.detect(batch_frames)]

    settings = [("one copy + one upload, all rows", dict(threads=1, split_bytes=1 << 62)),  # never in pieces
                ("pieces on the calling thread, all rows", dict(threads=1, skip_rows=False)),
                ("pieces on the calling thread, rows read", dict(threads=1)),
                *((f"{n} copy threads, rows read", dict(threads=n, parallel_bytes=0)) for n in args.threads if n > 1),
                (f"default ({default_threads} threads from 8 MB), all rows", dict(threads=default_threads, skip_rows=False)),
                (f"default ({default_threads} threads from 8 MB), rows read", dict(threads=default_threads))]
    for batch in args.batches:
        rows.append(("trtdet, pinned frames", batch, time_it(detect, pinned[:batch], iterations(batch))))
        for label, setting in settings:
            pre._set_copy_threads(**setting)
            rows.append((f"trtdet, pageable, {label}", batch, time_it(detect, frames[:batch], iterations(batch))))
    pre._set_copy_threads(default_threads)
    rows.append(("trtdet submit(), lone pageable frame", 1,
                 time_it(lambda f: detector.submit(f[0]).result(), frames[:1], args.iterations)))
    detector.close()

    peer = {b: statistics.median(t) for name, b, t in rows if "ultralytics" in name}
    device_name = torch.cuda.get_device_name()
    lines = [
        "# YOLO11n from pageable 1080p frames, by staging copy threads (detections on the host)",
        "",
        f"Device: {device_name}; torch {torch.__version__}. Command: `python benchmarks/pageable_frames.py --batches "
        f"{' '.join(map(str, args.batches))} --threads {' '.join(map(str, args.threads))} --iterations {args.iterations}`",
        "",
        "| pipeline | batch | median ms/call | min ms | images/s | vs ultralytics |",
        "|---|---|---|---|---|---|",
    ]
    results = []
    for name, b, t in rows:
        row, record = summarise(name, b, t, peer.get(b))
        lines.append(row)
        results.append(record)
    lines += ["", *notes]
    write_results(args.out, "\n".join(lines) + "\n", {"device": device_name, "results": results, "notes": notes})


if __name__ == "__main__":
    main()
