"""Where a pipeline call's time goes on the GPU and the host (torch.profiler, one process).

For each scenario (a model, images per call, pinned frames) it runs the detector unprofiled
(wall ms per call), then under ``torch.profiler`` and reads the trace: per CUDA stream the busy
time, the GPU's idle time inside the call, kernel time by kernel, host-to-device copies, and
the host's time in each pipeline phase (stage / launch / finish, timed around the detector's
own methods) and in CUDA synchronisation calls. ``--network`` also lists the network's
kernels at one batch size (no CUDA graphs, so each kernel is its own launch).

    python benchmarks/timeline.py --checkpoint ckpt.pth --out timeline.md
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timed_phases(detector: Any) -> dict[str, list[float]]:
    """Wrap the detector's stage/launch/finish (instance attributes win over methods) with timers."""
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    for name in ("_stage", "_launch", "_finish"):
        method = getattr(detector, name)

        def timed(*args, _method=method, _name=name):
            start = time.perf_counter()
            try:
                return _method(*args)
            finally:
                seconds[_name.strip("_")].append(time.perf_counter() - start)

        setattr(detector, name, timed)
    return seconds


def read_trace(prof: Any) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        prof.export_chrome_trace(handle.name)
        return json.loads(Path(handle.name).read_text())["traceEvents"]


def union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -1e30
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarise_trace(events: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]
    if not gpu:
        return {"note": "no GPU activity in the trace"}
    span = (min(e["ts"] for e in gpu), max(e["ts"] + e["dur"] for e in gpu))
    by_stream: dict[Any, list[tuple[float, float]]] = collections.defaultdict(list)
    for e in gpu:
        by_stream[e.get("args", {}).get("stream", e.get("tid"))].append((e["ts"], e["ts"] + e["dur"]))
    kernels: dict[str, list[float]] = collections.defaultdict(list)
    copies: dict[str, list[float]] = collections.defaultdict(list)
    for e in gpu:
        (kernels if e["cat"] == "kernel" else copies)[e["name"][:90]].append(e["dur"])
    runtime: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "cuda_runtime" and "dur" in e:
            runtime[e["name"]].append(e["dur"])
    busy = union_us([(e["ts"], e["ts"] + e["dur"]) for e in gpu if e["cat"] == "kernel"])
    per_call = 1e-3 / calls
    return {
        "gpu_span_ms_per_call": (span[1] - span[0]) * per_call,
        "kernel_busy_ms_per_call": busy * per_call,
        "streams_busy_ms_per_call": {str(k): union_us(v) * per_call for k, v in by_stream.items()},
        "kernels_ms_per_call": sorted(((n, sum(d) * per_call, len(d) / calls) for n, d in kernels.items()), key=lambda r: -r[1])[:25],
        "copies_ms_per_call": sorted(((n, sum(d) * per_call, len(d) / calls) for n, d in copies.items()), key=lambda r: -r[1]),
        "runtime_ms_per_call": sorted(((n, sum(d) * per_call, len(d) / calls) for n, d in runtime.items()), key=lambda r: -r[1])[:10],
    }


def profile_calls(fn: Any, calls: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    events = read_trace(prof)
    return summarise_trace(events, calls), events


def scenario(name: str, detector: Any, frames: list[np.ndarray], calls: int, out: Path | None) -> list[str]:
    from timing import time_it

    wall = statistics.median(time_it(detector.detect, frames, max(calls, 10), warmup=3))
    phases = timed_phases(detector)
    detector.detect(frames)
    for values in phases.values():
        values.clear()
    summary, events = profile_calls(lambda: detector.detect(frames), calls)
    for attribute in ("_stage", "_launch", "_finish"):
        delattr(detector, attribute)
    if out is not None:
        with gzip.open(out / f"trace-{name}.json.gz", "wt") as handle:
            json.dump({"traceEvents": events}, handle)
    lines = [f"## {name}: {len(frames)} images per call, {1e3 * wall:.2f} ms per call unprofiled", ""]
    host = {k: 1e3 * sum(v) / calls for k, v in phases.items()}
    lines.append("host ms per call in phases: " + ", ".join(f"{k} {v:.3f}" for k, v in host.items()))
    if "note" in summary:
        return [*lines, summary["note"], ""]
    lines.append(f"GPU span {summary['gpu_span_ms_per_call']:.3f} ms per call, kernels busy {summary['kernel_busy_ms_per_call']:.3f} ms; "
                 "streams busy: " + ", ".join(f"{k}: {v:.3f}" for k, v in summary["streams_busy_ms_per_call"].items()))
    lines += ["", "| kernel or copy | ms per call | launches per call |", "|---|---|---|"]
    lines += [f"| {n} | {ms:.3f} | {count:.1f} |" for n, ms, count in summary["kernels_ms_per_call"] + summary["copies_ms_per_call"]]
    lines += ["", "CUDA runtime calls (host ms per call): " + ", ".join(f"{n} {ms:.3f} (x{c:.0f})" for n, ms, c in summary["runtime_ms_per_call"]), ""]
    return lines


def network_kernels(engine: Any, batch: int, size: tuple[int, int], dtype: Any) -> list[str]:
    x = torch.rand(batch, 3, *size, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        engine(x)
    summary, _ = profile_calls(lambda: engine(x), 5)
    lines = [f"## network alone at batch {batch} (no CUDA graphs): kernels busy {summary['kernel_busy_ms_per_call']:.3f} ms, "
             f"GPU span {summary['gpu_span_ms_per_call']:.3f} ms", "", "| kernel | ms per call | launches |", "|---|---|---|"]
    lines += [f"| {n} | {ms:.3f} | {count:.1f} |" for n, ms, count in summary["kernels_ms_per_call"]]
    return [*lines, ""]


def network_ms_by_batch(engine: Any, batches: list[int], size: tuple[int, int], dtype: Any) -> list[str]:
    """Median ms of the engine alone (as loaded: CUDA graphs when on) per batch size."""
    from timing import time_it

    rows = ["| batch | network ms | ms per image |", "|---|---|---|"]
    for batch in batches:
        x = torch.rand(batch, 3, *size, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        ms = 1e3 * statistics.median(time_it(lambda t: engine(t), x, 20))
        rows.append(f"| {batch} | {ms:.3f} | {ms / batch:.3f} |")
    return ["## network alone with CUDA graphs, by batch size", "", *rows, ""]


def split_rows(model: str, weights: Any, frames: list[np.ndarray], splits: list[int]) -> list[str]:
    """One call on ``frames`` with the detector's batch size smaller: the scheduler then overlaps
    the upload of each part with the previous part's network."""
    from timing import time_it

    import trtdet

    rows = [f"## one call on {len(frames)} frames, run as parts of the detector's batch size", "",
            "| detector batch | ms per call | images/s |", "|---|---|---|"]
    for part in splits:
        detector = trtdet.load(model, weights=weights, backend="inductor", device="cuda", batch=part, precision="fp16")
        ms = 1e3 * statistics.median(time_it(detector.detect, frames, 20, warmup=3))
        rows.append(f"| {part} | {ms:.2f} | {len(frames) / ms * 1e3:.0f} |")
        detector.close()
    return [*rows, ""]


def main() -> None:
    import trtdet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="CenterNet checkpoint (else the default CenterNet ONNX)")
    parser.add_argument("--models", nargs="+", default=["centernet", "yolo"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--network", action="store_true", help="also list the network's kernels at --batch")
    parser.add_argument("--pipeline-graphs", action="store_true",
                        help="also batch 1 (pinned and ordinary frames) with the whole-pipeline CUDA graph off, then on")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (traces go beside it)")
    args = parser.parse_args()
    out_dir = args.out.parent if args.out else None
    frames = trtdet.pinned_frames(4 * args.batch, 1080, 1920)
    rng = np.random.default_rng(0)
    for frame in frames:
        frame[...] = rng.integers(0, 255, frame.shape, dtype=np.uint8)
    lines = [f"# Pipeline timelines on {torch.cuda.get_device_name()} (torch {torch.__version__}), pinned 1080p frames", ""]
    for model in args.models:
        weights = args.checkpoint if model == "centernet" else None
        for graphs in (True, False) if args.network else (True,):
            detector = trtdet.load(model, weights=weights, backend="inductor", device="cuda", batch=args.batch,
                                   precision="fp16", cuda_graphs=graphs)
            if graphs:
                pipeline = detector.pipeline_graphs
                for graph_on in (False, True) if pipeline is not None and args.pipeline_graphs else ():
                    pipeline.enabled = graph_on  # issue 26: batch 1 with the whole-pipeline graph off, then on
                    suffix = "-pipeline-graph" if graph_on else "-no-pipeline-graph"
                    lines += scenario(f"{model}-b1{suffix}", detector, frames[:1], 4 * args.calls, out_dir)
                    lines += scenario(f"{model}-b1-pageable{suffix}", detector, [np.array(frames[0])], 4 * args.calls, out_dir)
                    if graph_on:
                        state = pipeline.disabled_reason or f"{len(pipeline.cache)} keys captured"
                        lines += [f"whole-pipeline graph: {state}", ""]
                lines += scenario(f"{model}-b1", detector, frames[:1], 4 * args.calls, out_dir)
                lines += scenario(f"{model}-b{args.batch}", detector, frames[: args.batch], args.calls, out_dir)
                lines += scenario(f"{model}-stream-4x{args.batch}", detector, frames, max(2, args.calls // 2), out_dir)
                batches = sorted({1, 2, 4, 8, 16, args.batch})
                lines += network_ms_by_batch(detector.engine, batches, tuple(detector.spec.input_size), torch.float16)
            else:
                lines += network_kernels(detector.engine, args.batch, tuple(detector.spec.input_size), torch.float16)
            detector.close()
        lines += split_rows(model, weights, frames[: args.batch], [b for b in (8, 16) if b < args.batch])
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
