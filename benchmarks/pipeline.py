"""End-to-end CenterNet ResDCN on the GPU: trtdet's pipeline against an upstream-style one.

Upstream-style (xingyizhou/CenterNet demo semantics): per image on the CPU, cv2.warpAffine +
normalisation; torch forward of the network (DCN through torchvision's ``deform_conv2d``, the
kernel closest to upstream's DCNv2 extension); torch ``ctdet_decode`` (sigmoid, 3x3 max-pool
peaks, top-K); ``ctdet_post_process`` on the CPU (numpy inverse affine).
trtdet: ``trtdet.load("centernet", device="cuda", backend="torch")`` — uploads uint8 images,
CUDA warp-affine kernel, the same network (BatchNorm folded, NHWC, fp32 or fp16, optional CUDA
graph), CUDA decode kernel. The stream rows time many batches in one ``detect`` call, where
trtdet copies and uploads batch k+1 while the GPU runs batch k.

Both start from decoded uint8 BGR images in host memory and end with detections on the host.

    python benchmarks/pipeline.py --batches 1 32 --iterations 30 --out benchmarks/results/pipeline_h100.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from timing import (  # benchmarks/timing.py (this script's folder is on sys.path)
    summarise,
    time_it,
    write_results,
)

from trtdet_centernet import constants

MEAN = np.array(constants.MEAN, np.float32)
STD = np.array(constants.STD, np.float32)


def upstream_affine(width: int, height: int, size: int, inverse: bool = False) -> np.ndarray:
    """CenterNet's get_affine_transform for centre c, scale max(w, h), no rotation."""
    c = np.array([width / 2.0, height / 2.0], np.float32)
    s = float(max(width, height))
    src = np.array([c, c + [0, -0.5 * s], c + [-0.5 * s, -0.5 * s]], np.float32)
    dst = np.array([[size / 2, size / 2], [size / 2, size / 2 - size / 2], [0, 0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def upstream_preprocess(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    warped = cv2.warpAffine(image, upstream_affine(w, h, size), (size, size), flags=cv2.INTER_LINEAR)
    return ((warped.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def upstream_decode(hm: torch.Tensor, wh: torch.Tensor, reg: torch.Tensor, k: int = 100) -> torch.Tensor:
    """ctdet_decode: returns [B, K, 6] (x1, y1, x2, y2, score, class) at output resolution."""
    batch, cat, height, width = hm.shape
    hm = hm.sigmoid()
    keep = (F.max_pool2d(hm, 3, 1, 1) == hm).float()
    heat = hm * keep
    scores, inds = torch.topk(heat.view(batch, cat, -1), k)
    ys, xs = (inds // width).float(), (inds % width).float()
    top_scores, top_ind = torch.topk(scores.view(batch, -1), k)
    classes = (top_ind // k).float()
    inds = inds.view(batch, -1).gather(1, top_ind)
    ys = ys.view(batch, -1).gather(1, top_ind)
    xs = xs.view(batch, -1).gather(1, top_ind)
    reg = reg.view(batch, 2, -1).gather(2, inds.unsqueeze(1).expand(-1, 2, -1))
    wh = wh.view(batch, 2, -1).gather(2, inds.unsqueeze(1).expand(-1, 2, -1))
    xs, ys = xs + reg[:, 0], ys + reg[:, 1]
    boxes = torch.stack([xs - wh[:, 0] / 2, ys - wh[:, 1] / 2, xs + wh[:, 0] / 2, ys + wh[:, 1] / 2], 2)
    return torch.cat([boxes, top_scores.unsqueeze(2), classes.unsqueeze(2)], 2)


def upstream_postprocess(dets: np.ndarray, shapes: list[tuple[int, int]], out_size: int, threshold: float) -> list[np.ndarray]:
    results = []
    for det, (h, w) in zip(dets, shapes, strict=True):
        inverse = upstream_affine(w, h, out_size, inverse=True)
        det = det[det[:, 4] > threshold]
        pts = det[:, :4].reshape(-1, 2)
        pts = pts @ inverse[:, :2].T + inverse[:, 2]
        results.append(np.concatenate([pts.reshape(-1, 4), det[:, 4:]], 1))
    return results


def torchvision_dcn_forward(layer: torch.nn.Module):
    """A DCNv2 layer's forward through ``torchvision.ops.deform_conv2d``: the CUDA kernel closest to
    upstream's DCNv2 extension. Correct here because the upstream-style pipeline runs on the default
    stream, where torchvision launches its im2col (trtdet's own pipeline uses ``dcn_gather``)."""
    from torchvision.ops import deform_conv2d

    def forward(x: torch.Tensor) -> torch.Tensor:
        offset, mask = layer.offset_and_mask(x)
        return deform_conv2d(x, offset, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                             dilation=layer.dilation, mask=mask)

    return forward


class UpstreamPipeline:
    def __init__(self, model: torch.nn.Module, size: int, threshold: float) -> None:
        from trtdet_centernet.dcn import DCNv2

        self.model, self.size, self.threshold = model, size, threshold
        for layer in model.modules():
            if isinstance(layer, DCNv2):
                layer.forward = torchvision_dcn_forward(layer)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        batch = torch.from_numpy(np.stack([upstream_preprocess(im, self.size) for im in images])).cuda()
        with torch.inference_mode():
            heads = self.model.heads(batch)
            dets = upstream_decode(heads["hm"], heads["wh"], heads["reg"]).cpu().numpy()
        return upstream_postprocess(dets, [im.shape[:2] for im in images], self.size // 4, self.threshold)


def submit_from_threads(detector, frames: list[np.ndarray], threads: int) -> list:
    """Each of ``threads`` clients submits its share of ``frames``; returns every result."""
    from concurrent.futures import ThreadPoolExecutor

    def client(k: int) -> list:
        return [detector.submit(frame) for frame in frames[k::threads]]

    with ThreadPoolExecutor(threads) as pool:
        futures = [f for per in pool.map(client, range(threads)) for f in per]
    return [f.result() for f in futures]


TRTDET_CONFIGS = {
    "torch": ("trtdet torch (eager)", "torch", False),
    "inductor": ("trtdet inductor", "inductor", False),
    "inductor-graphs": ("trtdet inductor + CUDA graphs", "inductor", True),
    "torch-graphs": ("trtdet torch + CUDA graphs", "torch", True),
}


def pipeline_graph_off_rows(detector, label: str, batches: list[int], images, pinned, iterations: int) -> list:
    """The batches a whole-pipeline CUDA graph runs (issue 26), timed again with it off on the same detector."""
    graphs = getattr(detector, "pipeline_graphs", None)
    if graphs is None:
        return []
    rows = []
    graphs.enabled = False
    try:
        for batch in [b for b in batches if b <= graphs.max_batch]:
            rows.append((f"{label}, whole-pipeline graph off", batch, time_it(detector.detect, images[:batch], iterations)))
            rows.append((f"{label}, pinned frames, whole-pipeline graph off", batch,
                         time_it(detector.detect, pinned[:batch], iterations)))
    finally:
        graphs.enabled = graphs.disabled_reason is None
    if graphs.disabled_reason:
        print(f"{label}: whole-pipeline CUDA graph off: {graphs.disabled_reason}")
    return rows


def network_ms(detector, batch: int, size: int, precision: str, iterations: int) -> float:
    """Median ms of the engine alone on a ready input (NHWC, the engine's dtype, on the GPU)."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    x = torch.rand(batch, 3, size, size, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    return 1e3 * statistics.median(time_it(lambda t: detector.engine(t), x, iterations))


def main() -> None:
    import trtdet
    from trtdet_centernet.network import build_centernet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--frames", type=int, default=10000, help="frames for the memory-flatness check")
    parser.add_argument("--image-size", type=int, nargs=2, default=[1080, 1920], metavar=("H", "W"))
    parser.add_argument("--pipelines", nargs="+", default=["torch", "inductor", "inductor-graphs"],
                        choices=sorted(TRTDET_CONFIGS), help="trtdet engines to time")
    parser.add_argument("--precisions", nargs="+", default=["fp16"], choices=["fp32", "fp16"])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="CenterNet checkpoint (default: a random-weight one, seed 0)")
    parser.add_argument("--stream-chunks", type=int, default=8,
                        help="also time a stream of this many batches of the largest size (0: skip)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="also time each engine's network with torch.backends.cudnn.benchmark on")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_centernet(args.depth, 80).eval()
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = Path(tempfile.mkdtemp()) / "resdcn.pth"
        torch.save({"epoch": 0, "state_dict": model.state_dict()}, ckpt)
    else:
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in state["state_dict"].items()})
    model = model.cuda()
    photo = cv2.imread(str(Path(trtdet.__file__).parent / "data" / "sample.jpg"))
    image = cv2.resize(photo, (args.image_size[1], args.image_size[0]))
    rng = np.random.default_rng(0)
    distinct = [np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8) for _ in range(max(args.batches))]
    # The stream uses distinct arrays (copies) so no frame is warm in the CPU caches.
    stream_frames = [distinct[n % len(distinct)].copy() for n in range(max(args.batches) * args.stream_chunks)] if args.stream_chunks else []
    images = distinct
    pinned_images = trtdet.pinned_frames(len(images), *image.shape[:2])
    pinned_stream = trtdet.pinned_frames(len(stream_frames), *image.shape[:2])
    for target, frame in zip(pinned_images + pinned_stream, images + stream_frames, strict=True):
        target[...] = frame

    upstream = UpstreamPipeline(model, args.size, 0.3)
    rows = []
    networks = []
    device_name = torch.cuda.get_device_name()
    chunk = max(args.batches)
    label_stream = f"stream of {args.stream_chunks} x {chunk}"
    for batch in args.batches:
        rows.append(("upstream-style fp32", batch, time_it(upstream, images[:batch], args.iterations)))
    if stream_frames:
        base = time_it(lambda frames, size=chunk: [upstream(frames[i:i + size]) for i in range(0, len(frames), size)],
                       stream_frames, max(3, args.iterations // 4), warmup=1)
        rows.append((f"upstream-style fp32, {label_stream}", len(stream_frames), base))
    memory_detector = None
    for precision in args.precisions:
        for key in args.pipelines:
            label, backend, graphs = TRTDET_CONFIGS[key]
            detector = trtdet.load("centernet", weights=ckpt, backend=backend, device="cuda", batch=chunk,
                                   precision=precision, input_size=(args.size, args.size), cuda_graphs=graphs)
            for batch in args.batches:
                rows.append((f"{label} {precision}", batch, time_it(detector.detect, images[:batch], args.iterations)))
                networks.append((f"{label} {precision}", batch, network_ms(detector, batch, args.size, precision, args.iterations)))
            if args.cudnn_benchmark and not graphs:
                # cuDNN times its algorithms per shape on first use (trtdet leaves this off).
                torch.backends.cudnn.benchmark = True
                for batch in args.batches:
                    networks.append((f"{label} {precision}, cudnn.benchmark", batch,
                                     network_ms(detector, batch, args.size, precision, args.iterations)))
                torch.backends.cudnn.benchmark = False
            if stream_frames:
                # trtdet's detect() stages batch k+1 while the GPU runs batch k.
                ours = time_it(detector.detect, stream_frames, max(3, args.iterations // 4), warmup=2)
                rows.append((f"{label} {precision}, {label_stream}", len(stream_frames), ours))
                served = time_it(lambda frames, d=detector: submit_from_threads(d, frames, 4), stream_frames,
                                 max(3, args.iterations // 4), warmup=1)
                rows.append((f"{label} {precision}, submit() of the stream's frames from 4 threads", len(stream_frames), served))
            if graphs:  # the same frames decoded into pinned memory (trtdet.pinned_frames): no staging memcpy
                for batch in args.batches:
                    rows.append((f"{label} {precision}, pinned frames", batch,
                                 time_it(detector.detect, pinned_images[:batch], args.iterations)))
                if pinned_stream:
                    ours = time_it(detector.detect, pinned_stream, max(3, args.iterations // 4), warmup=2)
                    rows.append((f"{label} {precision}, pinned frames, {label_stream}", len(pinned_stream), ours))
                rows += pipeline_graph_off_rows(detector, f"{label} {precision}", args.batches, images, pinned_images,
                                                args.iterations)
            if memory_detector is None and key == args.pipelines[-1]:
                memory_detector = detector
            else:
                detector.close()

    # Memory over many frames at the largest batch, on the last pipeline timed.
    detector = memory_detector
    batch = chunk
    detector.detect(images[:batch])
    torch.cuda.synchronize()
    start_mem = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    done = 0
    checkpoints = []
    t0 = time.perf_counter()
    while done < args.frames:
        detector.detect(images[:batch])
        done += batch
        if done // 1000 != (done - batch) // 1000:
            torch.cuda.synchronize()
            checkpoints.append((done, torch.cuda.memory_allocated() / 2**20))
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    end_mem, peak_mem = torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
    memory_label = rows[-1][0].split(",")[0]

    base_by_batch = {b: statistics.median(t) for name, b, t in rows if name.startswith("upstream")}
    # (a stream row's "batch" is its frame count; its images/s divides frames by time)
    lines = [
        f"# CenterNet ResDCN-{args.depth} end to end, {args.size}x{args.size} input, {args.image_size[1]}x{args.image_size[0]} images",
        "",
        f"Device: {device_name}; torch {torch.__version__}. Command: `python benchmarks/pipeline.py "
        f"--batches {' '.join(map(str, args.batches))} --iterations {args.iterations} --frames {args.frames} "
        f"--stream-chunks {args.stream_chunks} --pipelines {' '.join(args.pipelines)} --precisions {' '.join(args.precisions)}`",
        "",
        "| pipeline | images per call | median ms/call | min ms | images/s | vs upstream-style |",
        "|---|---|---|---|---|---|",
    ]
    results = []
    for name, b, t in rows:
        row, record = summarise(name, b, t, base_by_batch[b])
        lines.append(row)
        results.append(record)
    lines += [
        "",
        "Network alone (the engine on a ready NHWC input on the GPU, median ms):",
        "",
        "| engine | batch | ms |",
        "|---|---|---|",
        *[f"| {name} | {b} | {ms:.3f} |" for name, b, ms in networks],
        "",
        f"Memory over {done} frames at batch {batch} ({memory_label}): allocated {start_mem / 2**20:.1f} MiB before, "
        f"{end_mem / 2**20:.1f} MiB after, peak {peak_mem / 2**20:.1f} MiB; {done / elapsed:.0f} images/s sustained.",
        "Allocated MiB at each 1000 frames: " + ", ".join(f"{n}: {m:.1f}" for n, m in checkpoints),
    ]
    text = "\n".join(lines) + "\n"
    write_results(args.out, text, {"device": device_name, "results": results,
        "network": [{"pipeline": n, "batch": b, "median_ms": ms} for n, b, ms in networks],
        "memory": {"checkpoints": checkpoints, "frames": done, "start_mib": start_mem / 2**20, "end_mib": end_mem / 2**20, "peak_mib": peak_mem / 2**20}})


if __name__ == "__main__":
    main()
