"""Synthetic scenes as a torch dataset (encoded on the fly) and as COCO files on disk."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from trtdet_centernet.training.backgrounds import load_backgrounds
from trtdet_centernet.training.synthetic import CLASS_NAMES, SceneConfig, generate_scene
from trtdet_centernet.training.targets import encode_targets


class SyntheticDetection:
    """Map-style dataset: item ``i`` is scene ``(seed, i)`` with its CenterNet targets.

    Items are dicts of numpy arrays: ``image`` HWC uint8 BGR and the ``Targets`` fields;
    the default collate of ``torch.utils.data.DataLoader`` stacks them into tensors.
    """

    def __init__(
        self,
        seed: int,
        length: int,
        cfg: SceneConfig,
        stride: int = 4,
        max_objects: int = 64,
        photos: list[np.ndarray] | None = None,
    ) -> None:
        self.seed, self.length, self.cfg = seed, length, cfg
        self.stride, self.max_objects = stride, max_objects
        self.photos = photos if photos is not None else load_backgrounds()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        scene = generate_scene(self.seed, index, self.photos, self.cfg)
        targets = encode_targets(
            scene.boxes,
            scene.class_ids,
            len(CLASS_NAMES),
            (self.cfg.height, self.cfg.width),
            self.stride,
            self.max_objects,
        )
        return {
            "image": scene.image,
            "hm": targets.hm,
            "wh": targets.wh,
            "reg": targets.reg,
            "ind": targets.ind,
            "mask": targets.mask,
        }


_WORKER_PHOTOS: list[np.ndarray] = []


def _init_worker() -> None:
    cv2.setNumThreads(1)
    _WORKER_PHOTOS[:] = load_backgrounds()


def _write_one(job: tuple[int, int, SceneConfig, str]) -> tuple[int, list[list[float]], list[int]]:
    seed, index, cfg, folder = job
    scene = generate_scene(seed, index, _WORKER_PHOTOS, cfg)
    cv2.imwrite(str(Path(folder) / f"{index:06d}.png"), scene.image)
    return index, scene.boxes.tolist(), scene.class_ids.tolist()


def write_coco_dataset(folder: Path | str, count: int, seed: int, cfg: SceneConfig, workers: int = 1) -> Path:
    """Write scenes ``(seed, 0..count-1)`` as PNGs under ``folder/images`` plus
    ``folder/annotations.json`` (COCO; category ids 1..C in ``CLASS_NAMES`` order); returns the json."""
    folder = Path(folder)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, cfg, str(images_dir)) for i in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            results = list(pool.map(_write_one, jobs, chunksize=8))
    else:
        _init_worker()
        results = [_write_one(job) for job in jobs]
    images, annotations = [], []
    for index, boxes, classes in sorted(results):
        images.append(
            {"id": index + 1, "file_name": f"{index:06d}.png", "height": cfg.height, "width": cfg.width}
        )
        for (x1, y1, x2, y2), cls in zip(boxes, classes, strict=True):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": cls + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {
            "description": f"trtdet synthetic shapes, seed {seed}, {count} scenes {cfg.width}x{cfg.height}"
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)
        ],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    return path
