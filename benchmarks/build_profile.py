"""Where a cold AOTInductor package build spends its time: one build per process, empty caches.

Each variant (``torch._inductor.config`` patches over trtdet's ``compile_settings``) builds the same source in a fresh
child process whose Inductor, Triton and trtdet caches are new, empty directories, so every
number is a cold build. The child prints trtdet's phases (export, compile, load check) and
Inductor's own ``dynamo_timed`` phases (lowering, Triton compiles, C++ compiles, ...).

    python benchmarks/build_profile.py yolo.onnx --model yolo --variants default wrapper-O1
    python benchmarks/build_profile.py ckpt.pth --kind weights --model centernet --out build.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Named sets of Inductor config patches a build can be tried with.
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "wrapper-O1": {"aot_inductor.compile_wrapper_opt_level": "O1"},
    "vec-isa-probe": {"cpp.vec_isa_ok": None},
    "no-pch": {"aot_inductor.precompile_headers": False},
    "no-pointwise-autotune": {"triton.autotune_pointwise": False},
}


def child(args: argparse.Namespace) -> None:
    """Build once with ``args.variant``'s patches and print one JSON line of timings."""
    from torch._dynamo.utils import compile_times

    from trtdet.context import RunContext
    from trtdet.contracts.engine import ModelFile
    from trtdet.engines.inductor.build import build_package, package_cache
    from trtdet.options import DetectorOptions
    from trtdet.plugins import get_model

    spec = get_model(args.model).spec
    options = DetectorOptions(device=args.device, precision=args.precision, batch=args.max_batch)
    messages: list[tuple[float, str]] = []
    started = time.perf_counter()

    def report(message: str) -> None:
        messages.append((round(time.perf_counter() - started, 2), message))
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    import trtdet.engines.inductor.build as package_build

    chosen = package_build.compile_settings
    # The variant's patches win over trtdet's own compile settings.
    package_build.compile_settings = lambda *a: {**chosen(*a), **VARIANTS[args.variant]}  # type: ignore[assignment]

    def build():
        return build_package(ModelFile(Path(args.source), args.kind), spec, RunContext.from_options(options),
                             cache=package_cache(), report=report)

    profile_text = ""
    if args.cprofile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(build)
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer).sort_stats("cumulative")
        stats.print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        stats.print_callers("check_call|run_compile_cmd|subprocess.py.*run")
        profile_text = buffer.getvalue()
    else:
        result = build()
    headers, values = compile_times(repr="csv", aggregate=True)
    phases = {str(h): float(v) for h, v in zip(headers, values, strict=True) if _is_number(v)}
    print(json.dumps({
        "variant": args.variant, "patches": VARIANTS[args.variant], "seconds": round(result.seconds, 2),
        **result.phases,
        "package_mb": round(result.path.stat().st_size / 1e6, 1), "inductor_phases_s": phases, "messages": messages,
        "cprofile": profile_text,
    }))


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="ONNX file or checkpoint")
    parser.add_argument("--model", required=True)
    parser.add_argument("--kind", choices=["onnx", "weights"], default="onnx")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="append each variant's JSON line here")
    parser.add_argument("--keep", action="store_true",
                        help="put the default variant's package in $TRTDET_CACHE_DIR (for later runs), not a temporary cache")
    parser.add_argument("--cprofile", action="store_true", help="profile the build with cProfile (slower; for attribution)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in the child
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    for variant in args.variants:
        with tempfile.TemporaryDirectory(prefix="trtdet-build-profile-") as tmp:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor", "TRITON_CACHE_DIR": f"{tmp}/triton",
                   "TRTDET_CACHE_DIR": f"{tmp}/trtdet"}
            if args.keep and variant == "default" and os.environ.get("TRTDET_CACHE_DIR"):
                env["TRTDET_CACHE_DIR"] = os.environ["TRTDET_CACHE_DIR"]
            argv = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
            wall = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - wall
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{variant}: build failed (exit {done.returncode}): {tail}")
            continue
        record = json.loads(lines[-1])
        record["process_wall_s"] = round(wall, 2)
        phases = sorted(record["inductor_phases_s"].items(), key=lambda kv: -kv[1])[:12]
        print(f"{variant}: {record['seconds']:.1f} s in build_package ({wall:.1f} s with process start); "
              f"export {record['export_s']} s, compile {record['compile_s']} s, load check {record['load_check_s']} s "
              f"(child start {record.get('load_check_start_s')} s, load {record.get('load_check_load_s')} s, "
              f"first run {record.get('load_check_first_run_s')} s)")
        print("  inductor phases: " + ", ".join(f"{name} {value:.1f}" for name, value in phases))
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
