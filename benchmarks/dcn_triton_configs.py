"""Time the Triton DCNv2 kernel's tile configurations at CenterNet ResDCN-18's DCN layers; print a table.

    python benchmarks/dcn_triton_configs.py [--output benchmarks/results/dcn_triton_configs_h200.md]

``trtdet_centernet.dcn_triton.kernel_config`` picks tiles from the channel counts and dtype
without timing anything; this shows what the alternatives cost on this GPU (CUDA events, median
of 30 runs after warm-up), each with the corner rows read through L1 and through L2 only,
so the rule can be set from measurements. Each alternative's output
is checked against the default's before it is timed. Same inputs as ``benchmarks/kernels.py
--only dcn``'s triton row (channels-last x and weight, offsets of about two pixels, random mask).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from timing import gpu_us  # benchmarks/timing.py (this script's folder is on sys.path)

from trtdet_centernet.dcn_triton import KernelConfig, _deform_conv2d_kernel, kernel_config, launch

LAYERS = [(512, 256, 16), (256, 128, 32), (128, 64, 64)]
HALF = [
    KernelConfig(64, 128, 64, 4, 2), KernelConfig(64, 128, 64, 4, 3), KernelConfig(64, 128, 64, 8, 2),
    KernelConfig(128, 64, 64, 8, 2), KernelConfig(64, 64, 64, 4, 2), KernelConfig(64, 64, 64, 4, 3),
    KernelConfig(32, 64, 64, 4, 3), KernelConfig(64, 256, 64, 8, 2), KernelConfig(64, 256, 32, 8, 3),
    KernelConfig(128, 128, 32, 8, 2), KernelConfig(64, 128, 32, 4, 3), KernelConfig(128, 128, 64, 8, 2),
]  # fmt: skip
SINGLE = [
    KernelConfig(64, 128, 32, 8, 2), KernelConfig(64, 128, 32, 8, 1), KernelConfig(64, 64, 32, 8, 2),
    KernelConfig(64, 64, 32, 4, 2), KernelConfig(32, 64, 32, 4, 2), KernelConfig(128, 64, 32, 8, 1),
    KernelConfig(128, 64, 16, 8, 2), KernelConfig(64, 64, 16, 4, 3),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table as markdown here")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    args = parser.parse_args()
    rows = []
    print(f"device: {torch.cuda.get_device_name()}", flush=True)
    for batch in args.batches:
        for cin, cout, size in LAYERS:
            g = torch.Generator(device="cuda").manual_seed(0)
            x = torch.randn(batch, cin, size, size, device="cuda", generator=g)
            offset = torch.randn(batch, 18, size, size, device="cuda", generator=g) * 2
            mask = torch.rand(batch, 9, size, size, device="cuda", generator=g)
            weight = torch.randn(cout, cin, 3, 3, device="cuda", generator=g) / (cin * 9) ** 0.5
            bias = torch.randn(cout, device="cuda", generator=g)
            for dtype, candidates in ((torch.float16, HALF), (torch.float32, SINGLE)):
                xt, ot, mt, wt, bt = (t.to(dtype) for t in (x, offset, mask, weight, bias))
                xt = xt.contiguous(memory_format=torch.channels_last)
                wt = wt.contiguous(memory_format=torch.channels_last)  # as the network holds it
                default = kernel_config(cin, cout, dtype)
                both = [*candidates, *(dataclasses.replace(c, l1_corners=not c.l1_corners) for c in candidates)]
                configs = [default, *(c for c in both if c != default)]
                want = launch(_deform_conv2d_kernel, xt, ot, mt, wt, bt, (1, 1), (1, 1), (1, 1), default).float()
                timed = []
                for config in configs:
                    def call(config=config, args=(xt, ot, mt, wt, bt)):
                        return launch(_deform_conv2d_kernel, *args, (1, 1), (1, 1), (1, 1), config)

                    try:
                        error = float((call().float() - want).abs().max())
                        if error > 1e-2 * float(want.abs().max()):
                            raise RuntimeError(f"output {error:.3g} off the default config's")
                        timed.append((config, gpu_us(call, runs=30)))
                    except Exception as exc:  # e.g. out of shared memory: report, keep going
                        print(f"  {config}: failed: {str(exc).splitlines()[0][:160]}", flush=True)
                base = next(us for c, us in timed if c == default)
                best = min(us for _, us in timed)
                name = "fp16" if dtype == torch.float16 else "fp32"
                for config, us in timed:
                    tag = ("default" if config == default else "") + (" best" if us == best else "")
                    row = (f"B={batch} {cin}->{cout} @ {size}x{size}", name,
                           f"{config.block_m}x{config.block_n}x{config.block_k} w{config.num_warps} s{config.num_stages}"
                           f"{' L1' if config.l1_corners else ' L2'}",
                           f"{us:,.1f}", f"{base / us:.2f}x", tag.strip())  # fmt: skip
                    rows.append(row)
                    print(" | ".join(row), flush=True)
    head = ("layer", "dtype", "tiles MxNxK, warps, stages, corner cache", "µs", "vs default", "")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(f"device: {torch.cuda.get_device_name()}\n\n" + "\n".join(lines) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
