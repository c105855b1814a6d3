"""COCO box mAP of any detector over an images folder and a COCO annotation file.

The detector is anything callable on a list of HWC uint8 BGR images returning one
``Detections`` per image (``trtdet.load(...)`` gives one). Ground-truth categories are
matched to the model's class ids **by name**, so a model numbering its classes 0..C-1 is
scored against a COCO file numbering them 1..C (or 1..90 with gaps). pycocotools does the
scoring, so the numbers are the ones the COCO leaderboards report.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from trtdet.detections import Detections
from trtdet.errors import InputError, ModelError, UsageError

#: Names of ``COCOeval.stats`` in order.
STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)

DetectFn = Callable[[Sequence[np.ndarray]], Sequence[Detections]]


@dataclass
class EvaluationResult:
    """COCO metrics (fractions in [0, 1]; -1 where COCO has nothing to score)."""

    stats: dict[str, float]
    images: int
    detections: int
    #: Ground-truth category names the model has no class for (left out of the score).
    unmatched_categories: list[str] = field(default_factory=list)
    summary: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            **{k: round(v, 4) for k, v in self.stats.items()},
            "images": self.images,
            "detections": self.detections,
            "unmatched_categories": self.unmatched_categories,
        }


def _load_coco(annotations: Path):  # type: ignore[no-untyped-def]
    try:
        from pycocotools.coco import COCO
    except ImportError as exc:
        raise UsageError("COCO evaluation needs pycocotools: pip install 'trtdet[val]'") from exc
    try:
        data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"{annotations}: annotation file not found") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"{annotations}: not a readable JSON file ({exc})") from exc
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if not isinstance(data, dict) or missing:
        raise UsageError(
            f"{annotations}: not a COCO detection file (missing {', '.join(missing) or 'an object'})"
        )
    data.setdefault("info", {})
    for ann in data["annotations"]:
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def category_mapping(
    categories: Sequence[dict], class_names: Sequence[str]
) -> tuple[dict[int, int], list[str]]:
    """``{model class id: COCO category id}`` for categories whose name the model knows, and the
    names of the others. Names compare case-insensitively with ``_``/``-`` read as spaces."""

    def norm(name: str) -> str:
        return " ".join(name.lower().replace("_", " ").replace("-", " ").split())

    by_name = {norm(name): i for i, name in enumerate(class_names)}
    mapping: dict[int, int] = {}
    unmatched: list[str] = []
    for cat in categories:
        cls = by_name.get(norm(cat["name"]))
        if cls is None:
            unmatched.append(cat["name"])
        else:
            mapping[cls] = int(cat["id"])
    return mapping, unmatched


def detections_to_coco(image_id: int, detections: Detections, mapping: dict[int, int]) -> list[dict]:
    """COCO result records (``bbox`` as x, y, w, h) for the detections of mapped classes."""
    records = []
    for box, score, cls in zip(
        detections.xyxy.tolist(), detections.confidence.tolist(), detections.class_id.tolist(), strict=True
    ):
        category = mapping.get(int(cls))
        if category is None:
            continue
        x1, y1, x2, y2 = box
        records.append(
            {
                "image_id": image_id,
                "category_id": category,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
        )
    return records


def score(coco_gt, results: list[dict], category_ids: Sequence[int]) -> tuple[dict[str, float], str]:  # type: ignore[no-untyped-def]
    """Run ``COCOeval`` (bbox) on ``results`` over ``category_ids``; returns (stats, printed summary)."""
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {name: 0.0 for name in STAT_NAMES}, "no detections"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.catIds = sorted(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = "\n".join(line for line in printed.getvalue().splitlines() if line.startswith(" Average"))
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}, summary


def evaluate(
    detect: DetectFn,
    images_dir: Path | str,
    annotations: Path | str,
    class_names: Sequence[str],
    *,
    batch: int = 8,
    progress: bool = False,
) -> EvaluationResult:
    """COCO-evaluate ``detect`` on every image listed in ``annotations`` (read from ``images_dir``)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UsageError(f"{images_dir}: images folder not found")
    coco = _load_coco(Path(annotations))
    mapping, unmatched = category_mapping(coco.dataset["categories"], class_names)
    if not mapping:
        raise UsageError(
            f"{annotations}: no category name matches the model's classes "
            f"(COCO has {', '.join(c['name'] for c in coco.dataset['categories'][:5])}...; "
            f"model has {', '.join(list(class_names)[:5])}...)"
        )
    entries = sorted(coco.dataset["images"], key=lambda e: e["id"])
    results: list[dict] = []
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(entries), unit="img", file=sys.stderr, leave=False)
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        images = []
        for entry in chunk:
            path = images_dir / entry["file_name"]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(str(path), "cannot read image listed in the annotations")
            if (image.shape[0], image.shape[1]) != (
                entry.get("height", image.shape[0]),
                entry.get("width", image.shape[1]),
            ):
                raise InputError(
                    str(path),
                    f"size {image.shape[1]}x{image.shape[0]} differs from the annotations' "
                    f"{entry['width']}x{entry['height']}",
                )
            images.append(image)
        outputs = detect(images)
        if len(outputs) != len(images):
            raise ModelError(f"detector returned {len(outputs)} results for {len(images)} images")
        for entry, detections in zip(chunk, outputs, strict=True):
            results.extend(detections_to_coco(int(entry["id"]), detections, mapping))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    stats, summary = score(coco, results, list(mapping.values()))
    return EvaluationResult(stats, len(entries), len(results), unmatched, summary)
