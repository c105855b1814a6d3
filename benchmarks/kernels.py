"""Time trtdet's numba.cuda kernels against their references; write a markdown table.

    python benchmarks/kernels.py --output benchmarks/results/kernels_h100.md

References: cv2.warpAffine preprocessing (CenterNet) and cv2.resize + copyMakeBorder (YOLO's
Ultralytics letterbox) on one CPU core (``cv2.setNumThreads(1)``); the
upstream ``ctdet_decode`` ops in torch on the GPU (sigmoid, 3x3 max-pool peak test, topk,
gathers); Ultralytics-style YOLO post-processing in torch + ``torchvision.ops.batched_nms`` on
the GPU and the numpy CPU decoder; ``torchvision.ops.deform_conv2d`` at CenterNet ResDCN-18's
DCN layer shapes. GPU times are CUDA events around each call (so host work inside a call
counts), after warm-up; each number is the median of many runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import gpu_us  # benchmarks/timing.py (this script's folder is on sys.path)

from trtdet_centernet.constants import MEAN as CENTERNET_MEAN
from trtdet_centernet.constants import STD as CENTERNET_STD


def cpu_us(fn, runs: int = 20, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, kernel: str, shape: str, reference: str, ref_us: float | None, ours: str, ours_us: float,
            batch: int) -> None:
        ratio = f"{ref_us / ours_us:.1f}x" if ref_us else ""
        self.rows.append((kernel, shape, reference, "" if ref_us is None else f"{ref_us:,.1f}", ours,
                          f"{ours_us:,.1f}", f"{ours_us / batch:,.2f}", ratio))
        print(" | ".join(str(c) for c in self.rows[-1]), flush=True)

    def markdown(self) -> str:
        head = ("kernel", "shape", "reference", "ref µs", "ours", "ours µs", "ours µs/image", "speed-up")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def frame(seed: int = 0) -> np.ndarray:
    """A 1920x1080 BGR frame: a real photo when scikit-image is there, else smooth noise."""
    try:
        from skimage import data

        photo = data.astronaut()[..., ::-1]
    except ImportError:
        rng = np.random.default_rng(seed)
        photo = cv2.GaussianBlur(rng.integers(0, 256, (270, 480, 3), dtype=np.uint8), (5, 5), 0)
    return np.ascontiguousarray(cv2.resize(photo, (1920, 1080), interpolation=cv2.INTER_LINEAR))


def _bench_preprocessor(table: Table, section: str, size: int, reference: str, options: dict, device_inputs: bool) -> None:
    """One preprocessor at 1920x1080 -> ``size``: cv2 on one core against the kernel alone, the
    full numpy-in call and (``device_inputs``) frames already on the GPU, at batch 1 and 32."""
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

    image = frame()
    cv2.setNumThreads(1)
    cpu = WarpAffinePreprocessor((size, size), **options)
    ref = cpu_us(lambda: cpu([image]))
    shape = f"1920x1080 -> {size}x{size}"
    table.add(section, f"{shape}, B=1", reference, ref, "not run (reference alone)", ref, 1)
    gpu = CudaWarpAffinePreprocessor((size, size), **options)
    for batch in (1, 32):
        images = [image] * batch
        gpu(images)
        kernel = gpu_us(gpu.relaunch, runs=100)
        table.add(section, f"{shape}, B={batch}", "cv2 1 core x B", ref * batch, "kernel (images on GPU)", kernel, batch)
        full = gpu_us(lambda images=images: gpu(images), runs=20)
        table.add(section, f"{shape}, B={batch}", "cv2 1 core x B", ref * batch,
                  "numpy in: pinned copy + H2D + kernel", full, batch)
        if device_inputs:
            on_gpu = [torch.from_numpy(image).cuda()] * batch
            dev = gpu_us(lambda on_gpu=on_gpu: gpu(on_gpu), runs=50)
            table.add(section, f"{shape}, B={batch}", "cv2 1 core x B", ref * batch, "CUDA uint8 in: D2D + kernel", dev, batch)


def bench_preprocess(table: Table) -> None:
    """CenterNet's warp-affine letterbox kernel against cv2.warpAffine."""
    options = dict(mean=CENTERNET_MEAN, std=CENTERNET_STD, channel_order="BGR", border_value=0)
    _bench_preprocessor(table, "preprocess", 512, "cv2.warpAffine + normalise, 1 core", options, device_inputs=True)


def bench_letterbox(table: Table) -> None:
    """YOLO's resize-and-pad letterbox (Ultralytics') kernel against cv2.resize + copyMakeBorder."""
    options = dict(channel_order="RGB", border_value=114, letterbox="ultralytics")
    _bench_preprocessor(table, "letterbox", 640, "cv2.resize + copyMakeBorder + normalise, 1 core", options,
                        device_inputs=False)


def centernet_output(batch: int, classes: int = 80, size: int = 128, blobs: int = 30, seed: int = 0) -> torch.Tensor:
    """A realistic fused CenterNet output on the GPU: low background, Gaussian peaks."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    hm = torch.randn(batch, classes, size, size, device="cuda", generator=g) * 0.5 - 7.0
    yy, xx = torch.meshgrid(torch.arange(size, device="cuda"), torch.arange(size, device="cuda"), indexing="ij")
    for b in range(batch):
        params = torch.rand(blobs, 5, device="cuda", generator=g)
        for c, cy, cx, sigma, peak in params.tolist():
            gauss = torch.exp(-((yy - cy * size) ** 2 + (xx - cx * size) ** 2) / (2 * (1 + 3 * sigma) ** 2))
            k = int(c * classes)
            hm[b, k] = torch.maximum(hm[b, k], -7.0 + (peak * 5 + 6.0) * gauss)
    pool = torch.nn.functional.max_pool2d(hm, 3, 1, 1)
    reg = torch.rand(batch, 2, size, size, device="cuda", generator=g)
    wh = torch.rand(batch, 2, size, size, device="cuda", generator=g) * 40 + 2
    fused = torch.cat([reg, wh, hm, pool], 1).reshape(batch, 4 + 2 * classes, size * size)
    return fused.permute(0, 2, 1).contiguous()


def torch_ctdet_decode(output: torch.Tensor, classes: int, size: int, k: int = 100) -> torch.Tensor:
    """Upstream ``ctdet_decode`` in torch ops on the fused output (sigmoid, max-pool nms, topk)."""
    batch = output.shape[0]
    hm = output[..., 4 : 4 + classes].permute(0, 2, 1).reshape(batch, classes, size, size)
    heat = hm.sigmoid()
    hmax = torch.nn.functional.max_pool2d(heat, 3, 1, 1)
    heat = heat * (hmax == heat).float()
    scores, inds = torch.topk(heat.reshape(batch, -1), k)
    clses = inds // (size * size)
    cells = inds % (size * size)
    ys, xs = (cells // size).float(), (cells % size).float()
    regwh = torch.gather(output[..., :4], 1, cells.unsqueeze(-1).expand(-1, -1, 4))
    cx, cy = xs + regwh[..., 0], ys + regwh[..., 1]
    half_w, half_h = regwh[..., 2] / 2, regwh[..., 3] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1) * 4
    return torch.cat([boxes, scores.unsqueeze(-1), clses.unsqueeze(-1).float()], -1)


def bench_centernet(table: Table) -> None:
    from trtdet.cuda.runtime import numba_stream
    from trtdet.preprocess.affine import letterbox_transform
    from trtdet_centernet.cuda_decode import CudaCenterNetDecoder, launch_decode

    decoder = CudaCenterNetDecoder(80, (512, 512), k=100, threshold=0.3)
    for batch in (1, 32):
        output = centernet_output(batch)
        transforms = [letterbox_transform((1080, 1920), (512, 512))] * batch
        decoder({"output": output}, transforms)
        ref_ops = gpu_us(lambda output=output: torch_ctdet_decode(output, 80, 128))
        ref_full = gpu_us(lambda output=output: torch_ctdet_decode(output, 80, 128).cpu())
        views = decoder._views
        stream = numba_stream(None)
        kernels = gpu_us(lambda output=output, views=views, stream=stream: launch_decode(
            output, *views, k=100, width=128, stride=4, threshold_logit=decoder.threshold_logit,
            stream=stream))
        full = gpu_us(lambda output=output, transforms=transforms: decoder({"output": output}, transforms))
        shape = f"[{batch}, 16384, 164], K=100"
        table.add("centernet decode", shape, "torch ctdet_decode ops (GPU)", ref_ops, "2 kernels", kernels, batch)
        table.add("centernet decode", shape, "torch ops + .cpu()", ref_full, "kernels + copy + Detections", full,
                  batch)


def yolo_output(batch: int, anchors: int = 8400, classes: int = 80, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    centres = torch.rand(batch, anchors // 8, 2, device="cuda", generator=g) * 640
    pick = torch.randint(0, anchors // 8, (batch, anchors), device="cuda", generator=g)
    xy = torch.gather(centres, 1, pick.unsqueeze(-1).expand(-1, -1, 2)) + torch.randn(
        batch, anchors, 2, device="cuda", generator=g) * 8
    wh = torch.rand(batch, anchors, 2, device="cuda", generator=g) * 200 + 10
    # Mostly background (< 0.2); ~3% of anchors carry one confident class, as a detector's head does.
    scores = torch.rand(batch, anchors, classes, device="cuda", generator=g) * 0.2
    hot = torch.rand(batch, anchors, device="cuda", generator=g) < 0.03
    cls = torch.randint(0, classes, (batch, anchors, 1), device="cuda", generator=g)
    conf = torch.rand(batch, anchors, 1, device="cuda", generator=g) * 0.75 + 0.25
    scores.scatter_(2, cls, torch.where(hot.unsqueeze(-1), conf, scores.gather(2, cls)))
    return torch.cat([xy, wh, scores], -1).permute(0, 2, 1).contiguous()


def torch_yolo_nms(output: torch.Tensor, conf: float, iou: float, max_det: int) -> list[torch.Tensor]:
    """Ultralytics-style v8 post-processing with torch ops and torchvision's batched_nms."""
    from torchvision.ops import batched_nms

    results = []
    for pred in output:
        rows = pred.T
        score, cls = rows[:, 4:].max(1)
        keep = score > conf
        rows, score, cls = rows[keep], score[keep], cls[keep]
        xyxy = torch.cat([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1)
        kept = batched_nms(xyxy, score, cls, iou)[:max_det]
        results.append(torch.cat([xyxy[kept], score[kept, None], cls[kept, None].float()], 1).cpu())
    return results


def bench_yolo(table: Table) -> None:
    from trtdet.preprocess.affine import letterbox_transform
    from trtdet_yolo.cuda_decode import CudaYoloDecoder
    from trtdet_yolo.decode import decode_yolo

    decoder = CudaYoloDecoder(80, 0.25, 0.7, 300)
    for batch in (1, 32):
        output = yolo_output(batch)
        transforms = [letterbox_transform((1080, 1920), (640, 640))] * batch
        decoder.validate({"output0": tuple(output.shape)}, "bench")
        ours = gpu_us(lambda output=output, transforms=transforms: decoder({"output0": output}, transforms))
        ref_gpu = gpu_us(lambda output=output: torch_yolo_nms(output, 0.25, 0.7, 300))
        host = output.cpu().numpy()
        ref_cpu = cpu_us(lambda host=host, transforms=transforms: decode_yolo(
            host, transforms, head="v8", num_classes=80, conf_threshold=0.25, iou_threshold=0.7,
            max_detections=300), runs=5)
        shape = f"[{batch}, 84, 8400], conf 0.25"
        table.add("yolo decode+NMS", shape, "torch + torchvision batched_nms (GPU) + .cpu()", ref_gpu,
                  "2 kernels + copy + Detections", ours, batch)
        table.add("yolo decode+NMS", shape, "numpy decode_yolo (CPU)", ref_cpu, "2 kernels + copy + Detections",
                  ours, batch)


def bench_dcn(table: Table) -> None:
    from torchvision.ops import deform_conv2d

    from trtdet_centernet.dcn_cuda import modulated_deform_conv_cuda
    from trtdet_centernet.dcn_gather import deform_conv2d_gather

    try:
        from trtdet_centernet.dcn_triton import deform_conv2d_triton
    except ImportError as exc:  # no triton: the other rows still run
        print(f"dcn: no triton row ({exc})", flush=True)
        deform_conv2d_triton = None
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    layers = [(512, 256, 16), (256, 128, 32), (128, 64, 64)]
    for batch in (1, 32):
        for cin, cout, size in layers:
            g = torch.Generator(device="cuda").manual_seed(0)
            x = torch.randn(batch, cin, size, size, device="cuda", generator=g)
            offset = torch.randn(batch, 18, size, size, device="cuda", generator=g) * 2
            mask = torch.rand(batch, 9, size, size, device="cuda", generator=g)
            weight = torch.randn(cout, cin, 3, 3, device="cuda", generator=g) / (cin * 9) ** 0.5
            bias = torch.randn(cout, device="cuda", generator=g)
            for dtype in (torch.float32, torch.float16):
                args = [t.to(dtype) for t in (x, offset, mask, weight, bias)]
                xt, ot, mt, wt, bt = args
                ref = gpu_us(lambda xt=xt, ot=ot, mt=mt, wt=wt, bt=bt: deform_conv2d(
                    xt, ot, wt, bt, padding=(1, 1), mask=mt), runs=30)
                ours = gpu_us(lambda args=args: modulated_deform_conv_cuda(*args), runs=30)
                name = "fp32" if dtype == torch.float32 else "fp16"
                shape = f"B={batch} {cin}->{cout} @ {size}x{size}, 3x3"
                table.add(f"DCNv2 {name}", shape, f"torchvision deform_conv2d {name}", ref, "im2col kernel + cuBLAS",
                          ours, batch)
                # What the networks run on CUDA: dcn_gather on channels-last input, eager and Inductor-compiled.
                xl = xt.contiguous(memory_format=torch.channels_last)
                eager = gpu_us(lambda xl=xl, ot=ot, mt=mt, wt=wt, bt=bt: deform_conv2d_gather(
                    xl, ot, mt, wt, bt, *geometry), runs=30)
                table.add(f"DCNv2 {name}", shape, f"torchvision deform_conv2d {name}", ref,
                          "dcn_gather, channels-last, eager", eager, batch)
                # The fused Triton kernel (dcn_triton, what dcn.deform_conv runs on CUDA when triton imports).
                if deform_conv2d_triton is not None:  # weight channels-last too, as the network holds it
                    wl = wt.contiguous(memory_format=torch.channels_last)
                    fused = gpu_us(lambda xl=xl, ot=ot, mt=mt, wl=wl, bt=bt: deform_conv2d_triton(
                        xl, ot, mt, wl, bt, *geometry), runs=30)
                    table.add(f"DCNv2 {name}", shape, f"torchvision deform_conv2d {name}", ref,
                              "triton (fused implicit GEMM), channels-last", fused, batch)
                if dtype == torch.float16:
                    compiled_fn = torch.compile(deform_conv2d_gather, dynamic=False)
                    compiled = gpu_us(lambda xl=xl, ot=ot, mt=mt, wt=wt, bt=bt, fn=compiled_fn: fn(
                        xl, ot, mt, wt, bt, *geometry), runs=30)
                    table.add(f"DCNv2 {name}", shape, f"torchvision deform_conv2d {name}", ref,
                              "dcn_gather, channels-last, Inductor", compiled, batch)


def profile() -> None:
    """Where the time of one small call goes: host (cProfile) vs GPU kernels (torch.profiler)."""
    import cProfile
    import pstats

    from trtdet.preprocess.affine import letterbox_transform
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor
    from trtdet_centernet.cuda_decode import CudaCenterNetDecoder
    from trtdet_centernet.dcn_cuda import modulated_deform_conv_cuda
    from trtdet_yolo.cuda_decode import CudaYoloDecoder

    image = frame()
    pre = CudaWarpAffinePreprocessor((512, 512), mean=CENTERNET_MEAN, std=CENTERNET_STD, channel_order="BGR",
                                     border_value=0)
    pre([image])
    on_gpu = [torch.from_numpy(image).cuda()]
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, 512, 16, 16, device="cuda", generator=g)
    dcn_args = (x, torch.randn(1, 18, 16, 16, device="cuda"), torch.rand(1, 9, 16, 16, device="cuda"),
                torch.randn(256, 512, 3, 3, device="cuda") / 68, torch.randn(256, device="cuda"))
    centernet = CudaCenterNetDecoder(80, (512, 512), k=100, threshold=0.3)
    cn_out = centernet_output(1)
    yolo = CudaYoloDecoder(80, 0.25, 0.7, 300)
    y_out = yolo_output(1)
    yolo.validate({"output0": tuple(y_out.shape)}, "bench")
    tr = [letterbox_transform((1080, 1920), (512, 512))]
    calls = {
        "preprocess.relaunch B=1": pre.relaunch,
        "preprocess CUDA-in B=1": lambda: pre(on_gpu),
        "dcn fp32 B=1 512->256@16": lambda: modulated_deform_conv_cuda(*dcn_args),
        "centernet decoder B=1": lambda: centernet({"output": cn_out}, tr),
        "yolo decoder B=1": lambda: yolo({"output0": y_out}, tr),
    }
    for name, fn in calls.items():
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(100):
            fn()
        host = (time.perf_counter() - t) * 1e4
        torch.cuda.synchronize()
        print(f"== {name}: {host:.1f} µs host per call (100 calls)", flush=True)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(100):
            fn()
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as tp:
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
        print(tp.key_averages().table(sort_by="cuda_time_total", row_limit=8), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/kernels.md"))
    parser.add_argument("--only", nargs="*", default=["preprocess", "letterbox", "centernet", "yolo", "dcn"])
    parser.add_argument("--profile", action="store_true", help="print where small calls spend time, then exit")
    args = parser.parse_args()
    if args.profile:
        profile()
        return
    import numba

    table = Table()
    device = torch.cuda.get_device_name()
    print(f"device: {device}", flush=True)
    benches = {"preprocess": bench_preprocess, "letterbox": bench_letterbox, "centernet": bench_centernet,
               "yolo": bench_yolo, "dcn": bench_dcn}
    for name in args.only:
        try:
            benches[name](table)
        except Exception as exc:  # keep the other sections' numbers
            print(f"{name}: failed: {exc!r}", flush=True)
            table.rows.append((name, "", f"FAILED: {exc!r}"[:200], "", "", "", "", ""))
    header = [
        "# trtdet numba.cuda kernels vs references",
        "",
        f"- device: **{device}** (compute capability {'.'.join(map(str, torch.cuda.get_device_capability()))})",
        f"- host CPU: {platform.processor() or platform.machine()}, cv2 {cv2.__version__} with 1 thread",
        f"- torch {torch.__version__}, numba {numba.__version__}, command: `python benchmarks/kernels.py`",
        "- µs: median over many runs (CUDA events around each call after warm-up; CPU: perf_counter).",
        "- speed-up = reference µs / ours µs (same batch).",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(header) + table.markdown() + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
