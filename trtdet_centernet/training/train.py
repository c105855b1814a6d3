"""Train CenterNet ResNet-DCN on procedural shape scenes: ``python -m trtdet_centernet.training.train``.

The run is bounded by ``--time-budget`` seconds and/or ``--steps``; the learning rate warms
up linearly then follows a cosine to zero over whichever bound comes first, so a fixed
wall-clock budget gets a complete schedule whatever the GPU's speed. Scenes are generated on
the fly by DataLoader workers (item ``i`` of seed ``s`` is always the same scene), so the
model never sees the held-out scenes of another seed. On CUDA it runs with fp16 autocast and
torchvision's ``deform_conv2d``; the CPU path exists for smoke tests.

Outputs in ``--out``: ``centernet_shapes.pth`` (upstream layout ``{"epoch", "state_dict"}``,
fp16 weights, loadable by ``trtdet export --model centernet --weights``), optionally split
into ``.partNN`` files (``--split-mb``), ``train_log.jsonl``, and with ``--val-count N`` the
held-out COCO metrics ``val_metrics.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trtdet.api import build_detector
from trtdet.engines.torch_backend import TorchEngine
from trtdet.lazy import lazy_import
from trtdet.options import DetectorOptions
from trtdet.pipeline import Detector
from trtdet_centernet.constants import MEAN, STD, STRIDE
from trtdet_centernet.network import CenterNetResDCN, build_centernet
from trtdet_centernet.plugin import CENTERNET
from trtdet_centernet.training.dataset import SyntheticDetection, write_coco_dataset
from trtdet_centernet.training.losses import ctdet_loss
from trtdet_centernet.training.synthetic import CLASS_NAMES, SceneConfig

if TYPE_CHECKING:
    import cv2
else:
    cv2 = lazy_import("cv2")

CHECKPOINT_NAME = "centernet_shapes.pth"


def learning_rate(progress: float, peak: float, warmup: float = 0.03, floor: float = 0.01) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine from ``peak`` to ``floor * peak``."""
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 BGR -> [B, 3, H, W] float ``(x/255 - mean)/std`` (channels-last memory)."""
    x = images.permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1) * 255
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def evaluation_detector(model: CenterNetResDCN, input_size: tuple[int, int], device: torch.device, batch: int = 32) -> Detector:
    """The in-training network as a real ``trtdet`` detector: the core pipeline over the torch engine.

    The same preprocess, engine contract and CenterNet decoder as ``trtdet run`` (top-K=100, every
    peak above score 0, as upstream's COCO evaluation keeps them), on this model's classes.
    """
    spec = dataclasses.replace(
        CENTERNET, class_names=tuple(CLASS_NAMES), input_size=input_size, conf_threshold=0.0,
        default_model=None, exporter=None, torch_model=None, sample_image=None,
    )  # fmt: skip
    engine = TorchEngine.from_module(model, DetectorOptions(device=device.type, batch=batch))
    return build_detector(spec, engine, device=device.type, batch=batch, model_source="<training>")


def save_checkpoint(model: torch.nn.Module, step: int, out: Path, split_mb: float | None) -> list[Path]:
    """Write ``{"epoch", "state_dict", "class_names"}`` (fp16 floats) to ``out``, split in parts if asked."""
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu()
        for k, v in model.state_dict().items()
    }
    buffer = io.BytesIO()
    # Upstream layout plus the class names (upstream loaders ignore extra keys).
    torch.save({"epoch": step, "state_dict": state, "class_names": list(CLASS_NAMES)}, buffer)
    data = buffer.getvalue()
    tmp = out.with_suffix(".tmp")
    if not split_mb:
        tmp.write_bytes(data)
        os.replace(tmp, out)
        return [out]
    size = int(split_mb * 1024 * 1024)
    parts = []
    for i, start in enumerate(range(0, len(data), size)):
        part = out.with_name(f"{out.name}.part{i:02d}")
        tmp.write_bytes(data[start : start + size])
        os.replace(tmp, part)
        parts.append(part)
    return parts


def join_parts(first_or_base: Path, output: Path) -> Path:
    """Reassemble ``X.part00, X.part01, ...`` into ``output``."""
    base = Path(str(first_or_base).split(".part")[0])
    parts = sorted(base.parent.glob(base.name + ".part*"))
    if not parts:
        raise FileNotFoundError(f"{base}: no .partNN files")
    output.write_bytes(b"".join(p.read_bytes() for p in parts))
    return output


def _loader(args: argparse.Namespace, cfg: SceneConfig, length: int) -> torch.utils.data.DataLoader:
    dataset = SyntheticDetection(args.seed, length, cfg, STRIDE, args.max_objects)
    workers = args.workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() and args.device == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=6 if workers > 0 else None,
        worker_init_fn=_worker_init if workers > 0 else None,
        # Forked workers inherit the parent's thread pools (CUDA, numba, OpenMP) mid-state and
        # can deadlock; spawned ones start clean.
        multiprocessing_context="spawn" if workers > 0 else None,
    )


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def train(args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny weights/gradients otherwise slow CPU steps several-fold
    switches = _fast_training_switches() if device.type == "cuda" else contextlib.nullcontext()
    with switches:
        return _train(args, out, device)


@contextlib.contextmanager
def _fast_training_switches() -> Iterator[None]:
    """cuDNN autotuning and TF32 for the run, put back afterwards (they are process-wide, and
    trtdet's fp32 inference in the same process must not inherit them)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32)
    cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32 = True, True, True
    try:
        yield
    finally:
        cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32 = before


def _train(args: argparse.Namespace, out: Path, device: torch.device) -> dict[str, object]:
    cfg = SceneConfig(args.input_size, args.input_size, min_size=args.min_size, max_size=args.max_size)
    max_steps = args.steps or 10**9
    loader = _loader(args, cfg, length=min(max_steps, 10**7) * args.batch)
    model = build_centernet(depth=args.depth, num_classes=len(CLASS_NAMES), head_conv=64)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    log = open(out / "train_log.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - kept open for the run
    start = time.perf_counter()
    step, seen, history = 0, 0, []
    last_save = start
    for batch in loader:
        elapsed = time.perf_counter() - start
        progress = step / max_steps
        if args.time_budget:
            progress = max(progress, elapsed / args.time_budget)
        if progress >= 1:
            break
        lr = learning_rate(progress, args.lr, warmup=args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        x = normalise(batch["image"])
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            heads = model.heads(x)
        loss, parts = ctdet_loss(heads, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        seen += x.shape[0]
        if step % args.log_every == 0 or step == 1:
            record = {
                "step": step,
                "time": round(time.perf_counter() - start, 1),
                "lr": round(lr, 7),
                "loss": round(float(loss.detach()), 4),
                **{k: round(float(v), 4) for k, v in parts.items()},
                "img_per_s": round(seen / max(time.perf_counter() - start, 1e-6), 1),
            }
            history.append(record["loss"])
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
        if args.save_every and time.perf_counter() - last_save > args.save_every:
            save_checkpoint(model, step, out / CHECKPOINT_NAME, args.split_mb)
            last_save = time.perf_counter()
    train_time = time.perf_counter() - start
    model.eval()
    files = save_checkpoint(model, step, out / CHECKPOINT_NAME, args.split_mb)
    summary: dict[str, object] = {
        "steps": step,
        "images_seen": seen,
        "train_seconds": round(train_time, 1),
        "loss_history": history,
        "checkpoint": [p.name for p in files],
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    if args.val_count:
        val_cfg = SceneConfig(
            args.val_size, args.val_size, min_size=args.min_size, max_size=args.max_size, jpeg_probability=0
        )
        t0 = time.perf_counter()
        ann = write_coco_dataset(
            Path(args.val_dir or out / "val"), args.val_count, args.val_seed, val_cfg, max(1, args.workers)
        )
        from trtdet.evaluation import evaluate

        with evaluation_detector(model, (args.val_size, args.val_size), device) as detector:
            result = evaluate(detector, ann.parent / "images", ann, CLASS_NAMES, batch=32)
        summary["val"] = {
            **result.to_dict(),
            "seed": args.val_seed,
            "size": args.val_size,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(result.summary, flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "loss_history"}), flush=True)
    log.close()
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trtdet_centernet.training.train", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"]
    )
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--input-size", type=int, default=256, help="square training scene size (multiple of 32)")
    p.add_argument("--min-size", type=float, default=20.0, help="smallest object diameter, pixels")
    p.add_argument("--max-size", type=float, default=180.0, help="largest object diameter, pixels")
    p.add_argument("--max-objects", type=int, default=64)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.03, help="warm-up fraction of the run")
    p.add_argument("--clip", type=float, default=10.0, help="gradient norm clip")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    p.add_argument("--time-budget", type=float, default=0.0, help="training seconds (0: --steps only)")
    p.add_argument("--workers", type=int, default=max(0, min(15, (os.cpu_count() or 1) - 1)))
    p.add_argument("--seed", type=int, default=0, help="training scene family")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--save-every", type=float, default=0.0, help="also checkpoint every N seconds (0: only at the end)"
    )
    p.add_argument(
        "--split-mb", type=float, default=None, help="split the checkpoint into parts of this many MiB"
    )
    p.add_argument("--val-count", type=int, default=0, help="held-out scenes to evaluate on after training")
    p.add_argument("--val-size", type=int, default=512)
    p.add_argument("--val-seed", type=int, default=1000)
    p.add_argument("--val-dir", default=None, help="where to write the held-out set (default OUT/val)")
    args = p.parse_args(argv)
    if not args.steps and not args.time_budget:
        p.error("give --steps and/or --time-budget")
    if args.input_size % 32 or args.val_size % 32:
        p.error("--input-size and --val-size must be multiples of 32")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
