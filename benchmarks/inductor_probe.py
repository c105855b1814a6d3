"""Does an AOTInductor package load in a fresh process? A minimal reproduction, one variant per process.

Compiles two packages (a few plain convolutions; trtdet's CenterNet ResDCN-18 with torchvision's
``deform_conv2d``) with a dynamic batch, then loads each in fresh Python processes that differ in
one thing each (CUDA initialised first, torchvision imported first, the input's dtype or memory
layout, ``AOTI_RUNTIME_CHECK_INPUTS``), and reports each process's exit status and last line.

    python benchmarks/inductor_probe.py --out /tmp/probe

Seen on the H200 (2026-12-01, torch 2.11.0+cu130): every load segfaulted, even in the process
that compiled the package. The cuda-gdb backtrace (printed at the end) ends in ``std::regex``
inside the package's ``wrapper.so`` (``torch::aot_inductor::parse_device_str``): the image's
``CXX=/opt/gcc/bin/g++`` links libstdc++ statically into the wrapper. With ``CXX=/usr/bin/g++``
the same package loads and runs in a fresh process; trtdet picks such a compiler itself
(``trtdet/engines/inductor/compiler.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

LOADER = r"""
import faulthandler, sys, time
faulthandler.enable()
path, dtype_name, layout, pre = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
if "torchvision" in pre:
    import torchvision  # noqa: F401  (registers torchvision::deform_conv2d)
import torch
if "cuda" in pre:
    torch.cuda.init(); torch.zeros(1, device="cuda")
started = time.perf_counter()
runner = torch._inductor.aoti_load_package(path)
loaded = time.perf_counter() - started
dtype = getattr(torch, dtype_name)
x = torch.rand(2, 3, 512, 512, device="cuda", dtype=dtype)
if layout == "nhwc":
    x = x.contiguous(memory_format=torch.channels_last)
out = runner(x)
out = out[0] if isinstance(out, (list, tuple)) else out
torch.cuda.synchronize()
print(f"ok load={loaded:.3f}s out={tuple(out.shape)} {out.dtype} finite={bool(torch.isfinite(out.float()).all())}")
"""


def build_tiny():
    import torch
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 8, 1)
    ).eval(), torch.float16


def build_centernet():
    import torch

    from trtdet_centernet.network import build_centernet, fold_batchnorm

    return fold_batchnorm(build_centernet(18).eval()), torch.float16


def compile_package(name: str, out: Path) -> dict:
    import torch

    model, dtype = {"tiny": build_tiny, "centernet": build_centernet}[name]()
    model = model.to("cuda", dtype).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 512, 512, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=32)
    started = time.perf_counter()
    with torch.inference_mode():
        exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    export_s = time.perf_counter() - started
    path = out / f"{name}.pt2"
    started = time.perf_counter()
    torch._inductor.aoti_compile_and_package(exported, package_path=str(path))
    compile_s = time.perf_counter() - started
    # The same process, straight after compiling (the case that worked before).
    runner = torch._inductor.aoti_load_package(str(path))
    same = runner(x)
    same = same[0] if isinstance(same, (list, tuple)) else same
    with torch.inference_mode():
        eager = model(x)
    diff = float((same.float() - eager.float()).abs().max())
    return {"package": name, "export_s": round(export_s, 2), "compile_s": round(compile_s, 2),
            "mb": round(path.stat().st_size / 1e6, 1), "same_process_max_diff": diff}


def run_loader(path: Path, dtype: str, layout: str, pre: str, env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    proc = subprocess.run([sys.executable, "-c", LOADER, str(path), dtype, layout, pre],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    tail = [line for line in lines if line.strip()][-6:]
    return {"package": path.stem, "dtype": dtype, "layout": layout, "pre": pre, "env": env_extra,
            "rc": proc.returncode, "tail": tail}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/aoti-probe"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}))
    for name in ("tiny", "centernet"):
        print(json.dumps(compile_package(name, args.out)), flush=True)
    check = {"AOTI_RUNTIME_CHECK_INPUTS": "1"}
    cases = [
        ("tiny", "float16", "nhwc", "none", {}),
        ("tiny", "float16", "nchw", "none", {}),
        ("tiny", "float32", "nhwc", "none", {}),
        ("tiny", "float16", "nchw", "none", check),
        ("tiny", "float32", "nhwc", "none", check),
        ("tiny", "float16", "nhwc", "cuda", {}),
        ("centernet", "float16", "nhwc", "torchvision", {}),
        ("centernet", "float16", "nhwc", "torchvision,cuda", {}),
        ("centernet", "float16", "nchw", "torchvision", {}),
        ("centernet", "float16", "nchw", "torchvision", check),
        ("centernet", "float16", "nhwc", "none", {}),
        ("tiny", "float16", "nhwc", "none", {"PYTHONPATH": "/tmp/site"}),
        ("centernet", "float16", "nhwc", "torchvision", {"PYTHONPATH": "/tmp/site"}),
    ]
    failed = None
    for name, dtype, layout, pre, env in cases:
        result = run_loader(args.out / f"{name}.pt2", dtype, layout, pre, env)
        print(json.dumps(result), flush=True)
        if result["rc"] != 0 and failed is None:
            failed = (name, dtype, layout, pre)
    if failed is not None:  # a native backtrace of the first failure (cuda-gdb works without GPU code too)
        loader = args.out / "loader.py"
        loader.write_text(LOADER)
        name, dtype, layout, pre = failed
        gdb = subprocess.run(["cuda-gdb", "-batch", "-ex", "run", "-ex", "bt 30", "--args", sys.executable,
                              str(loader), str(args.out / f"{name}.pt2"), dtype, layout, pre],
                             capture_output=True, text=True, timeout=300)
        print("\n".join((gdb.stdout + gdb.stderr).splitlines()[-45:]))


if __name__ == "__main__":
    main()
