"""The real RT-DETR-l against Ultralytics' own predictor, on the GPU machine (too large to commit).

The committed CPU reference uses a narrow RT-DETR (``tests/data/make_ultralytics_families.py``);
this makes the same check with ``rtdetr-l.yaml`` itself (random weights, seed 0, scores spread
as there): export it with Ultralytics (``dynamic=True``), record Ultralytics' ``predict`` on the
cases of ``tests/trtdet_yolo/ultralytics_cases.py``, then run ``trtdet run --model rtdetr`` on
the same files with each ``--device/--backend`` given and compare (same class, IoU >= 0.95,
|score diff| <= 0.01, nothing extra >= 0.25). Exit 1 when anything differs.

On the GPU machine (ultralytics installed from a carried wheel, without its dependencies; the
source photos in ``TRTDET_KERNEL_ASSETS`` where scikit-image and matplotlib are absent)::

    pip install --no-deps ultralytics-8.4.190-py3-none-any.whl
    TRTDET_KERNEL_ASSETS=shared/kernel-assets python benchmarks/rtdetr_l_check.py --out /tmp/rtdetr-l \\
        --run cuda:inductor --run cuda:torch --run cpu:onnxruntime
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for rtdetr-l.onnx, the reference and the cases")
    parser.add_argument("--run", action="append", default=None, metavar="DEVICE:BACKEND",
                        help="trtdet runs to check (default: cuda:inductor); DEVICE:ultralytics is the control: "
                             "Ultralytics' own PyTorch model (same seed) predicting on DEVICE, against the same reference")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    reference_path = args.out / "rtdetr_l_detections.json"
    if not reference_path.is_file():
        from tests.data.make_ultralytics_families import make_rtdetr_l

        make_rtdetr_l(args.out)
    record = json.loads(reference_path.read_text())["rtdetr_l"]
    from click.testing import CliRunner

    from tests.trtdet_yolo.test_ultralytics_families import parity_problems
    from tests.trtdet_yolo.ultralytics_cases import make_cases
    from trtdet.cli.main import cli

    files = make_cases(args.out / "cases")
    failed = False
    for run in args.run or ["cuda:inductor"]:
        device, backend = run.split(":")
        if backend == "ultralytics":
            problems, count = _ultralytics_control(device, files, record)
            print(f"{run} (control, not trtdet): {count} reference detections, {len(problems)} problems")
            for line in problems[:5]:
                print("  ", line)
            continue
        cli_args = ["run", "--model", "rtdetr", "--onnx", str(args.out / "rtdetr-l.onnx"), "--device", device,
                    "--backend", backend, "--precision", args.precision, "--json", "-", "--quiet"]
        for path in files.values():
            cli_args += ["--source", str(path)]
        result = CliRunner().invoke(cli, cli_args)
        if result.exit_code != 0:
            print(f"{run}: trtdet failed: {result.output[-2000:]}")
            failed = True
            continue
        records = {json.loads(line)["source"]: json.loads(line) for line in result.stdout.splitlines()}
        problems, count = [], 0
        for name, path in files.items():
            ours = records[str(path)]["detections"]
            count += len(record["cases"][name]["detections"])
            problems += parity_problems(name, ours, record["cases"][name]["detections"])
        print(f"{run} {args.precision}: {count} Ultralytics detections, {len(problems)} problems")
        for line in problems[:20]:
            print("  ", line)
        failed |= bool(problems)
    return 1 if failed else 0


def _ultralytics_control(device: str, files: dict[str, Path], record: dict) -> tuple[list[str], int]:
    """Ultralytics' PyTorch rtdetr-l (rebuilt as ``make_rtdetr_l`` builds it) predicting on ``device``, compared
    with the reference (its ONNX on the CPU) as trtdet is: how far the model's own numerics move its detections."""
    import torch
    from ultralytics import RTDETR

    from tests.data.make_ultralytics_families import RTDETR_SPREAD, detections, spread_scores
    from tests.trtdet_yolo.test_ultralytics_families import parity_problems

    torch.manual_seed(0)
    model = RTDETR("rtdetr-l.yaml")
    spread_scores(model.model, seed=1, **RTDETR_SPREAD)
    problems, count = [], 0
    for name, path in files.items():
        (result,) = model.predict(str(path), device=0 if device == "cuda" else "cpu", verbose=False)
        want = record["cases"][name]["detections"]
        count += len(want)
        problems += parity_problems(name, detections(result), want)
    return problems, count


if __name__ == "__main__":
    sys.exit(main())
