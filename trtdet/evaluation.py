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
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trtdet.detections import Detections
from trtdet.errors import InputError, ModelError, TrtdetError, UsageError
from trtdet.io.images import read_image

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
    #: One line per listed image that could not be read or detected on (scored as no detections).
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            **{k: round(v, 4) for k, v in self.stats.items()},
            "images": self.images,
            "detections": self.detections,
            "unmatched_categories": self.unmatched_categories,
            "failed": self.failed,
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
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{annotations}: not a readable JSON file ({_first_line(exc)})") from None
    validate_coco(data, str(annotations))
    data.setdefault("info", {})
    for ann in data["annotations"]:
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_coco(data: object, source: str) -> None:
    """``UsageError`` naming the first field that does not follow the COCO detection format.

    Checked before pycocotools sees the file, so a JSON that is valid but not COCO (``5``,
    ``null``, an image without ``file_name``, a bbox of strings) is one line, not a traceback.
    """

    def fail(where: str, problem: str) -> None:
        raise UsageError(f"{source}: not a COCO detection file ({where}: {problem})")

    if not isinstance(data, dict):
        fail("top level", f"expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            fail(key, "missing")
        if not isinstance(data[key], list):
            fail(key, f"expected a list, got {type(data[key]).__name__}")
    for k, image in enumerate(data["images"]):
        where = f"images[{k}]"
        if not isinstance(image, dict):
            fail(where, f"expected an object, got {type(image).__name__}")
        if not _is_id(image.get("id")):
            fail(f"{where}.id", f"expected an integer, got {image.get('id')!r}")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            fail(f"{where}.file_name", f"expected a file name, got {image.get('file_name')!r}")
        for size in ("width", "height"):
            if size in image and not (_is_id(image[size]) and image[size] > 0):
                fail(f"{where}.{size}", f"expected a positive integer, got {image[size]!r}")
    for k, category in enumerate(data["categories"]):
        where = f"categories[{k}]"
        if not isinstance(category, dict):
            fail(where, f"expected an object, got {type(category).__name__}")
        if not _is_id(category.get("id")):
            fail(f"{where}.id", f"expected an integer, got {category.get('id')!r}")
        if not isinstance(category.get("name"), str):
            fail(f"{where}.name", f"expected a string, got {category.get('name')!r}")
    for k, ann in enumerate(data["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict):
            fail(where, f"expected an object, got {type(ann).__name__}")
        for key in ("image_id", "category_id"):
            if not _is_id(ann.get(key)):
                fail(f"{where}.{key}", f"expected an integer, got {ann.get(key)!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            fail(f"{where}.bbox", f"expected [x, y, width, height] numbers, got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            fail(f"{where}.bbox", f"negative width or height in {bbox!r}")
        if "area" in ann and not _is_number(ann["area"]):
            fail(f"{where}.area", f"expected a number, got {ann['area']!r}")
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            fail(f"{where}.iscrowd", f"expected 0 or 1, got {ann['iscrowd']!r}")
        if "id" in ann and not _is_id(ann["id"]):
            fail(f"{where}.id", f"expected an integer, got {ann['id']!r}")


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
    if not entries:
        raise UsageError(f"{annotations}: lists no images: nothing to score")
    check_file_names(coco.dataset["images"], annotations)
    results: list[dict] = []
    failed: list[str] = []
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(entries), unit="img", file=sys.stderr, leave=False)
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        readable, images = [], []
        for entry in chunk:
            try:
                images.append(_read_listed(images_dir / entry["file_name"], entry))
                readable.append(entry)
            except InputError as exc:  # scored as an image with no detections
                failed.append(str(exc))
        for entry, detections in zip(readable, _detect_each(detect, images, readable, images_dir, failed), strict=True):
            if detections is not None:
                results.extend(detections_to_coco(int(entry["id"]), detections, mapping))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    stats, summary = score(coco, results, list(mapping.values()))
    return EvaluationResult(stats, len(entries), len(results), unmatched, summary, failed)


def escaping_name(file_name: str) -> bool:
    """True for a ``file_name`` that does not stay below the images folder: absolute, or one
    whose ``..`` components climb out of it (checked on the name, as written)."""
    if os.path.isabs(file_name):
        return True
    depth = 0
    for part in file_name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def check_file_names(images: Sequence[dict], annotations: Path | str) -> None:
    """``UsageError`` before any image is read when an entry's ``file_name`` leads outside the
    images folder: an annotation file must not make ``val`` read (and score, and name in its
    errors) files elsewhere on the machine. Links inside the images folder are the user's own
    and are followed."""
    for k, image in enumerate(images):
        if escaping_name(image["file_name"]):
            raise UsageError(
                f"{annotations}: images[{k}].file_name {image['file_name']!r} leads outside the --images folder "
                "(absolute, or climbing out with '..'); val reads only images below it"
            )


def _read_listed(path: Path, entry: dict) -> np.ndarray:
    """An image the annotations list, read as ``trtdet run`` reads files, at the size they state."""
    try:
        image = read_image(path)
    except InputError as exc:
        raise InputError(str(path), f"cannot read image listed in the annotations ({exc.problem})") from None
    if (image.shape[0], image.shape[1]) != (entry.get("height", image.shape[0]), entry.get("width", image.shape[1])):
        raise InputError(
            str(path),
            f"size {image.shape[1]}x{image.shape[0]} differs from the annotations' {entry['width']}x{entry['height']}",
        )
    return image


def _detect_each(
    detect: DetectFn, images: list[np.ndarray], entries: list[dict], images_dir: Path, failed: list[str]
) -> list[Detections | None]:
    """``detect(images)``; if the batch fails, one image at a time so only the failing ones fail."""
    if not images:
        return []
    try:
        outputs = list(detect(images))
    except (TrtdetError, ValueError, RuntimeError) as exc:
        if len(images) == 1:
            failed.append(f"{images_dir / entries[0]['file_name']}: detection failed: {_first_line(exc)}")
            return [None]
        return [out for image, entry in zip(images, entries, strict=True)
                for out in _detect_each(detect, [image], [entry], images_dir, failed)]
    if len(outputs) != len(images):
        raise ModelError(f"detector returned {len(outputs)} results for {len(images)} images")
    return outputs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
