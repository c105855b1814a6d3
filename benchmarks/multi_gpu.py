"""Throughput on one GPU and on every GPU of the machine: one detector per GPU fed from one reader.

For CenterNet ResDCN-18 fp16 and YOLO11n fp16 at batch 32 on 1080p frames in host memory:
one detector on ``cuda:0``, then one detector per GPU (``cuda:0``, ``cuda:1``, ...) fed from
one reader thread with the same frames; images/s of each and the scaling factor, and the
GPU memory each device holds over the whole run (``--frames``, 10,000 by default).

Every measurement runs in its own process (this script with ``--measure``); the AOTInductor
packages are built first, in parallel, into the artifact cache (``$TRTDET_CACHE_DIR``) so the
measurements only load them. On a machine with one GPU only the single-GPU rows are measured.
Needs no Ray.

    python benchmarks/multi_gpu.py --out benchmarks/results/multi_gpu_h200.md
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("centernet", "yolo")
LABELS = {"centernet": "CenterNet ResDCN-18", "yolo": "YOLO11n"}


# -- one measurement (a child process) ------------------------------------------------------------

def make_frames(count: int, height: int, width: int) -> list:
    """``count`` distinct 1080p-style BGR frames (the sample photo, resized, with noise)."""
    import cv2
    import numpy as np

    import trtdet

    photo = cv2.imread(str(Path(trtdet.__file__).parent / "data" / "sample.jpg"))
    image = cv2.resize(photo, (width, height))
    rng = np.random.default_rng(0)
    return [np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)
            for _ in range(count)]


FLUSH = "flush"


def _worker(detector, batches: queue.Queue, done: list, errors: list) -> None:
    """Detect every batch from the queue with the detector's scheduler (batch k+1 staged during k).

    ``FLUSH`` (the end of a timed round) finishes the batch in flight; None ends the worker.
    """
    try:
        with detector.scheduler() as scheduler:
            while True:
                batch = batches.get()
                if batch is None:
                    break
                if batch is FLUSH:
                    done[0] += len(scheduler.drain())
                    continue
                for frame in batch:
                    done[0] += len(scheduler.add(frame))
            done[0] += len(scheduler.drain())
    except BaseException as exc:  # reported by the parent
        errors.append(repr(exc))


def measure(args: argparse.Namespace) -> dict:
    """One model on ``args.gpus`` GPUs: the reader hands batches round-robin to one detector per GPU."""
    import torch

    import trtdet

    devices = [f"cuda:{i}" for i in range(args.gpus)]
    detectors = [trtdet.load(args.model, engine=args.engine, device=device, batch=args.batch,
                             precision="fp16", cuda_graphs=args.cuda_graphs) for device in devices]
    frames = make_frames(args.distinct, *args.image_size)
    batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
    for detector in detectors:  # warm-up: graphs captured, buffers grown
        for _ in range(3):
            detector.detect(batches[0])
    for device in devices:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start_mib = [torch.cuda.memory_allocated(d) / 2**20 for d in devices]
    queues = [queue.Queue(maxsize=2) for _ in devices]
    done = [[0] for _ in devices]
    errors: list[str] = []
    workers = [threading.Thread(target=_worker, args=(d, q, n, errors)) for d, q, n in zip(detectors, queues, done, strict=True)]
    for worker in workers:
        worker.start()
    rounds, checkpoints = [], []
    sent, k = 0, 0
    round_start = started = time.perf_counter()
    while sent < args.frames:  # the one reader: frames in host memory, batch by batch, round-robin
        queues[k % len(queues)].put(batches[k % len(batches)])
        sent += args.batch
        k += 1
        if sent % args.round_frames < args.batch or sent >= args.frames:
            # Finish the round's frames so each round's time is that of its own frames.
            for q in queues:
                q.put(FLUSH)
            while sum(n[0] for n in done) < sent and not errors:
                time.sleep(0.0005)
            now = time.perf_counter()
            rounds.append(now - round_start)
            round_start = now
            checkpoints.append([sent, [torch.cuda.memory_allocated(d) / 2**20 for d in devices]])
    for q in queues:
        q.put(None)
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(errors[0])
    result = {
        "model": args.model, "gpus": args.gpus, "devices": devices, "frames": sent, "seconds": elapsed,
        "images_per_s": sent / elapsed, "round_frames": args.round_frames, "round_s": rounds,
        "memory": {"start_mib": start_mib, "end_mib": [torch.cuda.memory_allocated(d) / 2**20 for d in devices],
                   "peak_mib": [torch.cuda.max_memory_allocated(d) / 2**20 for d in devices],
                   "checkpoints": checkpoints},
        "backend": detectors[0].backend, "gpu_names": [torch.cuda.get_device_name(d) for d in devices],
    }
    for detector in detectors:
        detector.close()
    return result


# -- the run (the parent) --------------------------------------------------------------------------

def build_packages(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """Both fp16 AOTInductor packages (max batch 32), built in parallel processes (cache hits are instant)."""
    import torch

    from trtdet_centernet.network import build_centernet
    from trtdet_yolo.plugin import default_model_path

    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        checkpoint = folder / "resdcn18.pth"
        torch.save({"epoch": 0, "state_dict": build_centernet(18, 80).state_dict()}, checkpoint)
    sources = {"centernet": ["--weights", str(checkpoint)], "yolo": [str(default_model_path())]}
    packages, builds = {}, []
    for model in args.models:
        packages[model] = folder / f"{model}-fp16.pt2"
        command = [sys.executable, "-m", "trtdet.cli.main", "build", "--backend", "inductor", *sources[model],
                   "--model", model, "--precision", "fp16", "--batch", str(args.batch), "--device", "cuda:0",
                   "-o", str(packages[model]), "-q"]
        builds.append((model, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for model, process in builds:
        output, _ = process.communicate(timeout=args.timeout)
        if process.returncode != 0:
            raise SystemExit(f"building the {model} package failed:\n{output[-2000:]}")
        print(f"{model}: {output.strip().splitlines()[-1] if output.strip() else 'built'}", flush=True)
    return packages


def run_child(args: argparse.Namespace, model: str, gpus: int, package: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", "--model", model, "--gpus", str(gpus),
               "--engine", str(package), "--frames", str(args.frames), "--batch", str(args.batch),
               "--distinct", str(args.distinct), "--round-frames", str(args.round_frames),
               "--image-size", *map(str, args.image_size)]
    if not args.cuda_graphs:
        command.append("--no-cuda-graphs")
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise SystemExit(f"measuring {model} on {gpus} GPU(s) failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def report(args: argparse.Namespace, measured: list[dict], command: str) -> None:
    import statistics

    from timing import summarise, write_results  # benchmarks/timing.py

    device = measured[0]["gpu_names"][0]
    gpus_available = max(m["gpus"] for m in measured)
    lines = [
        f"# One detector per GPU, fed from one reader: {args.frames} 1080p frames in host memory, fp16, batch {args.batch}",
        "",
        f"Device: {gpus_available} x {device}. Command: `{command}`. Each row is its own process; "
        f"backend {measured[0]['backend']}{' + CUDA graphs' if args.cuda_graphs else ''}. "
        f"Rounds of {args.round_frames} frames (median and fastest); images/s is the median round's.",
        "",
        "| pipeline | frames per round | median ms/round | min ms | images/s | vs one GPU |",
        "|---|---|---|---|---|---|",
    ]
    results, memory = [], {}
    single = {m["model"]: statistics.median(m["round_s"]) for m in measured if m["gpus"] == 1}
    for m in measured:
        name = f"{LABELS[m['model']]} fp16, {m['gpus']} GPU{'s' if m['gpus'] > 1 else ''} ({', '.join(m['devices'])})"
        row, record = summarise(name, m["round_frames"], m["round_s"], single[m["model"]] if m["gpus"] > 1 else None)
        record.update(gpus=m["gpus"], frames=m["frames"], whole_run_images_per_s=m["images_per_s"])
        lines.append(row)
        results.append(record)
        memory[name] = m["memory"]
    lines += ["", "Whole runs: " + "; ".join(f"{r['pipeline']}: {r['whole_run_images_per_s']:.0f} images/s" for r in results), ""]
    lines += ["GPU memory allocated per device (MiB) over each run (start -> end, peak; every "
              f"{args.round_frames} frames):", ""]
    for name, mem in memory.items():
        per_device = ", ".join(f"cuda:{i} {s:.0f} -> {e:.0f} (peak {p:.0f})" for i, (s, e, p) in
                               enumerate(zip(mem["start_mib"], mem["end_mib"], mem["peak_mib"], strict=True)))
        series = " ".join("/".join(f"{v:.0f}" for v in values) for _, values in mem["checkpoints"])
        lines.append(f"- {name}: {per_device}; samples {series}")
    if gpus_available < 2:
        lines += ["", "Only one GPU was visible: the rows for one detector per GPU need a machine with two."]
    text = "\n".join(lines) + "\n"
    write_results(args.out, text, {"device": device, "gpus": gpus_available, "command": command,
                                   "results": results, "memory": memory})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=10000, help="frames per measurement")
    parser.add_argument("--round-frames", type=int, default=2048, help="frames per timed round (and memory sample)")
    parser.add_argument("--distinct", type=int, default=64, help="distinct frames in host memory, cycled")
    parser.add_argument("--image-size", type=int, nargs=2, default=[1080, 1920], metavar=("H", "W"))
    parser.add_argument("--gpu-counts", type=int, nargs="+", default=None,
                        help="GPU counts to measure (default: 1 and every GPU when there are more)")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    parser.add_argument("--checkpoint", type=Path, default=None, help="CenterNet checkpoint (default: random weights, seed 0)")
    parser.add_argument("--timeout", type=float, default=400, help="seconds per child process")
    parser.add_argument("--out", type=Path, default=None)
    # A measurement (child process):
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gpus", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return

    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise SystemExit("no CUDA GPU is visible")
    counts = args.gpu_counts or sorted({1, count})
    if max(counts) > count:
        raise SystemExit(f"--gpu-counts {max(counts)}: only {count} GPU(s) visible")
    command = "python benchmarks/multi_gpu.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="trtdet-multi-gpu-") as tmp:
        packages = build_packages(args, Path(tmp))
        measured = []
        for model in args.models:
            for gpus in counts:
                result = run_child(args, model, gpus, packages[model])
                print(f"{model} on {gpus} GPU(s): {result['images_per_s']:.0f} images/s over {result['frames']} frames",
                      flush=True)
                measured.append(result)
    report(args, measured, command.strip())


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
