"""Record Ultralytics' own detections on the shipped YOLO11n ONNX (run once, by hand).

The reference for ``tests/trtdet_yolo/test_ultralytics_parity.py``. Ultralytics is not
installable beside the test environment's torch, so this runs in a virtual environment of its
own (torch and torchvision come from local disk)::

    python -m venv /work/venv-ultra
    /work/venv-ultra/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics onnxruntime scikit-image
    /work/venv-ultra/bin/python tests/data/make_ultralytics_detections.py /path/to/yolo11n.onnx

(the ONNX is the one trtdet ships: ``python -c "from trtdet_yolo.plugin import default_model_path as
p; print(p())"`` in trtdet's environment). For every case of ``tests/trtdet_yolo/ultralytics_cases.py``
it writes the case's file, runs ``YOLO(onnx).predict(file, imgsz=640, conf=0.25, iou=0.7,
rect=False, device="cpu")`` on it alone (onnxruntime, CPU), and records the boxes, scores and classes, the
sha256 of the BGR pixels Ultralytics read and of the 640x640 image its ``LetterBox`` made. It
also records ``LetterBox.get_params`` and ``scale_boxes`` for a list of image sizes, and the
versions of everything involved, into ``tests/data/ultralytics/yolo11n_detections.json``.

``rect=False``: ``predict`` defaults to ``rect=True``, and for a *dynamic* export (the shipped
file is one) or a ``.pt`` model that pads only to a multiple of the stride (640x448 for a
600x400 photo: ``LetterBox(auto=True)``). trtdet, like Ultralytics on a static export (its
default export), runs the full 640x640 input: ``LetterBox(auto=False)``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "ultralytics" / "yolo11n_detections.json"
#: (H, W) sizes whose letterbox geometry is recorded: odd, tiny, 1-pixel, ties in round().
GEOMETRY_SIZES = [
    (512, 512), (600, 512), (300, 451), (500, 741), (427, 640), (1080, 810), (1080, 1920), (1, 1), (1, 9),
    (9, 1), (1, 3000), (3000, 1), (5, 1280), (1280, 5), (7, 5), (17, 13), (640, 640), (641, 640), (639, 641),
    (75, 113), (50, 75), (120, 512), (500, 120), (333, 1001), (2, 3), (3, 2), (1280, 1280), (99, 101),
]


def _sha256(array) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def main(onnx_path: str) -> None:
    import cv2
    import numpy as np
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.ops import scale_boxes
    from ultralytics.utils.patches import imread

    sys.path.insert(0, str(ROOT))
    from tests.trtdet_yolo.ultralytics_cases import CASES, make_case

    onnx = Path(onnx_path)
    model = YOLO(str(onnx), task="detect")
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            path = make_case(case, Path(tmp))
            read = imread(str(path))
            letterboxed = LetterBox(640, auto=False)(image=read)
            (result,) = model.predict(
                str(path), imgsz=640, conf=0.25, iou=0.7, rect=False, device="cpu", verbose=False
            )
            boxes = result.boxes
            cases[case.name] = {
                "file": path.name,
                "note": case.note,
                "height": int(read.shape[0]),
                "width": int(read.shape[1]),
                "imread_sha256": _sha256(read),
                "letterbox_sha256": _sha256(letterboxed),
                "detections": [
                    {"box": [round(float(v), 3) for v in box], "score": round(float(score), 5), "class_id": int(cls)}
                    for box, score, cls in zip(
                        boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                    )
                ],
            }
            print(case.name, read.shape, [(d["class_id"], d["score"]) for d in cases[case.name]["detections"]])
    geometry = []
    probe = [[10.0, 20.0, 300.0, 400.0]]
    for h, w in GEOMETRY_SIZES:
        params = LetterBox(640, auto=False).get_params({"img": np.zeros((h, w, 3), np.uint8)})
        back = scale_boxes((640, 640), torch.tensor(probe), (h, w)).tolist()[0]
        geometry.append({
            "size": [h, w],
            "new_unpad": list(params["new_unpad"]),
            "top": params["top"], "bottom": params["bottom"], "left": params["left"], "right": params["right"],
            "probe_box": probe[0],
            "probe_box_in_source": [round(v, 4) for v in back],
        })
    record = {
        "made_by": "tests/data/make_ultralytics_detections.py",
        "predict": {"imgsz": 640, "conf": 0.25, "iou": 0.7, "rect": False, "device": "cpu"},
        "model": {"file": onnx.name, "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()},
        "versions": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "torchvision": version("torchvision"),
            "onnxruntime": version("onnxruntime"),
            "opencv": cv2.__version__,
            "numpy": np.__version__,
            "scikit-image": version("scikit-image"),
            "matplotlib": version("matplotlib"),
            "python": platform.python_version(),
        },
        "cases": cases,
        "letterbox_geometry": geometry,
    }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
