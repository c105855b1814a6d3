"""Make the small Ultralytics ONNX fixtures in ``tests/data/ultralytics/`` (run once, by hand).

Ultralytics is not installable beside the test environment's torch, so this runs in a virtual
environment of its own (no model hub needed: the architectures are built from their yaml with
random weights)::

    python -m venv /tmp/ultra-venv
    /tmp/ultra-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/ultra-venv/bin/pip install ultralytics onnx onnxslim
    /tmp/ultra-venv/bin/python tests/data/make_ultralytics_fixtures.py

Each architecture (YOLOv5u, YOLOv8, YOLO11 detection) is shrunk with a custom width scale so a
file is a few hundred KB, and exported at 160x160 as: a static batch-1 simplified file (the
Ultralytics default), a dynamic-batch simplified file, and (v8 and 11) a dynamic unsimplified one
(which keeps the Shape/Gather/Range/ConstantOfShape/Expand shape arithmetic). The files are
1.4-3.9 MB: the box head's 64-channel convolutions (4 x reg_max 16) set a floor. ``versions.json`` beside
the files records what made them.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent / "ultralytics"
IMGSZ = 160
#: Few classes keep the heads (and the files) small; the output is still [B, 4 + nc, anchors].
NUM_CLASSES = 5
#: (fixture name, packaged yaml, [depth, width, max_channels]); YOLO11's C2PSA needs >= 64
#: channels per attention head at the last stage, hence its wider scale.
ARCHS = (
    ("yolov5u", "v5/yolov5.yaml", [0.33, 0.0625, 1024]),
    ("yolov8", "v8/yolov8.yaml", [0.33, 0.0625, 1024]),
    ("yolo11", "11/yolo11.yaml", [0.50, 0.125, 1024]),
)
VARIANTS = (
    ("static", dict(dynamic=False, simplify=True)),
    ("dynamic", dict(dynamic=True, simplify=True)),
    ("dynamic_raw", dict(dynamic=True, simplify=False)),
)


def main() -> None:
    import torch
    import ultralytics
    from ultralytics import YOLO

    OUT.mkdir(parents=True, exist_ok=True)
    cfg_root = Path(ultralytics.__file__).parent / "cfg" / "models"
    made = {}
    for name, cfg, scale in ARCHS:
        spec = yaml.safe_load((cfg_root / cfg).read_text())
        spec["scales"] = {"n": scale}
        spec["nc"] = NUM_CLASSES
        with tempfile.TemporaryDirectory() as tmp:
            yaml_path = Path(tmp) / f"{name}n-tiny.yaml"
            yaml_path.write_text(yaml.safe_dump(spec))
            torch.manual_seed(0)
            model = YOLO(str(yaml_path))
            for variant, options in VARIANTS:
                if name == "yolov5u" and variant == "dynamic_raw":
                    continue  # the v5u head is v8's: its shape arithmetic is the same as yolov8_dynamic_raw's
                exported = Path(model.export(format="onnx", imgsz=IMGSZ, batch=1, **options))
                target = OUT / f"{name}_{variant}.onnx"
                shutil.move(exported, target)
                made[target.name] = {"arch": cfg, "scale": scale, "nc": NUM_CLASSES, "imgsz": IMGSZ, **options,
                                     "bytes": target.stat().st_size}
    versions = {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "onnx": version("onnx"),
        "onnxslim": version("onnxslim"),
        "python": platform.python_version(),
        "files": made,
    }
    (OUT / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(json.dumps(versions, indent=2))


if __name__ == "__main__":
    main()
