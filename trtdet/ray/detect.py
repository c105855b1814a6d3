"""``Detect``: a callable class for Ray Data's ``map_batches`` -- one detector per actor.

It takes batches with any of these columns and returns one record per row (``RECORD_SCHEMA``):

* ``image``: decoded HWC uint8 images (BGR, or RGB with ``channel_order="rgb"``, e.g. from
  ``ray.data.read_images``), with optional ``error`` (rows already failed upstream) and
  ``warning`` (images decoded from damaged data) columns;
* ``bytes``: encoded image files (``ray.data.read_binary_files``), decoded here;
* neither: ``source``/``path`` names read here (local files or pyarrow filesystem URIs).

Source names come from ``source``, else ``path``, else the row's position. A bad row is a
record with ``error``; the batch never fails because of one image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.lazy import lazy_import
from trtdet.options import DetectorOptions
from trtdet.ray.records import error_record, records_table
from trtdet.results import speed_record

if TYPE_CHECKING:
    import cv2
    import pyarrow.fs as pafs
else:
    cv2 = lazy_import("cv2")
    pafs = lazy_import("pyarrow.fs")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Detect:
    """``ds.map_batches(Detect, fn_constructor_kwargs={"model": "yolo", ...}, concurrency=N, num_gpus=G)``.

    Constructor keywords: ``model``; ``options`` (a ``DetectorOptions`` or a dict of its fields)
    and/or ``trtdet.load`` keywords (``device="cuda"``, ``batch=32``, ``conf=0.4``, ...);
    ``annotate`` (a local directory or filesystem URI: annotated copies are written there and
    their names go in ``output``); ``channel_order`` of an ``image`` column (``bgr``/``rgb``).
    On a Ray worker given GPUs, ``device="cuda"`` is the GPU Ray assigned (it sets
    ``CUDA_VISIBLE_DEVICES``).
    """

    def __init__(
        self,
        model: str,
        *,
        options: DetectorOptions | dict[str, Any] | None = None,
        annotate: str | None = None,
        channel_order: str = "bgr",
        **load_keywords: Any,
    ) -> None:
        import trtdet

        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order: expected 'bgr' or 'rgb', got {channel_order!r}")
        if isinstance(options, dict):
            options = DetectorOptions(**options)
        self.detector = trtdet.load(model, options=options, **load_keywords)
        self.class_names = self.detector.class_names
        self.channel_order = channel_order
        self.annotate = annotate.rstrip("/") if annotate else None
        if self.annotate and "://" not in self.annotate:
            from pathlib import Path

            Path(self.annotate).mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: dict[str, Any]) -> Any:
        """One record per row of ``batch`` (a ``pyarrow.Table`` of ``RECORD_SCHEMA``)."""
        count = len(next(iter(batch.values()))) if batch else 0
        sources = self._sources(batch, count)
        images, errors, warnings = self._images(batch, sources)
        records: list[dict[str, Any] | None] = [None] * count
        with self.detector.scheduler() as scheduler:
            outcomes = []
            for i in range(count):
                outcomes += scheduler.add(images[i], i, run=images[i] is not None)
            outcomes += scheduler.drain()
        for outcome in outcomes:
            i = outcome.tag
            if outcome.error is not None:
                errors[i] = f"{sources[i]}: detection failed: {_first_line(outcome.error)}"
            if errors[i] is not None or outcome.result is None:
                records[i] = error_record(sources[i], errors[i] or f"{sources[i]}: no image")
                continue
            image = images[i]
            height, width = image.shape[:2]
            records[i] = {
                "source": sources[i], "frame": None, "width": int(width), "height": int(height),
                "detections": outcome.result.to_records(self.class_names), "error": None,
                "output": self._annotate(sources[i], image, outcome.result), "warning": warnings[i],
                "speed": speed_record(outcome.result),
            }
        return records_table(records)  # type: ignore[arg-type]

    def __del__(self) -> None:
        detector = getattr(self, "detector", None)
        if detector is not None:
            detector.close()

    @staticmethod
    def _sources(batch: dict[str, Any], count: int) -> list[str]:
        for column in ("source", "path"):
            if column in batch:
                return [str(value) for value in batch[column]]
        return [f"row {i}" for i in range(count)]

    def _images(
        self, batch: dict[str, Any], sources: list[str]
    ) -> tuple[list[np.ndarray | None], list[str | None], list[str | None]]:
        from trtdet.io.images import to_bgr_uint8
        from trtdet.ray.inputs import decode_source

        count = len(sources)
        upstream = list(batch["error"]) if "error" in batch else [None] * count
        errors: list[str | None] = [e if isinstance(e, str) and e else None for e in upstream]
        noted = list(batch["warning"]) if "warning" in batch else [None] * count
        warnings: list[str | None] = [w if isinstance(w, str) and w else None for w in noted]
        images: list[np.ndarray | None] = [None] * count
        for i in range(count):
            if errors[i] is not None:
                continue
            try:
                if "image" in batch:
                    image = np.asarray(batch["image"][i])
                    if image.ndim == 3 and image.shape[2] == 3 and self.channel_order == "rgb":
                        image = image[:, :, ::-1]
                    images[i] = to_bgr_uint8(np.ascontiguousarray(image), sources[i])
                else:
                    data = batch["bytes"][i] if "bytes" in batch else None
                    images[i], errors[i], warnings[i] = decode_source(sources[i], data)
            except Exception as exc:  # InputError from to_bgr_uint8, or a malformed cell
                text = _first_line(exc)
                errors[i] = text if text.startswith(sources[i]) else f"{sources[i]}: {text}"
        return images, errors, warnings

    def _annotate(self, source: str, image: np.ndarray, detections: Any) -> str | None:
        if not self.annotate:
            return None

        from trtdet.io.draw import draw_detections
        from trtdet.ray.inputs import local_name

        canvas = draw_detections(image, detections, self.class_names)
        name = local_name(source)
        ok, encoded = cv2.imencode(name[name.rfind("."):], canvas)
        if not ok:
            return None
        target = f"{self.annotate}/{name}"
        if "://" in target:
            fs, path = pafs.FileSystem.from_uri(target)
            with fs.open_output_stream(path) as handle:
                handle.write(encoded.tobytes())
        else:
            with open(target, "wb") as handle:
                handle.write(encoded.tobytes())
        return target
