"""Keeping only some classes (``--classes``): a wrapper around any model's decoder."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.errors import UsageError
from trtdet.postprocess.decoder import QueuingDecoder

if TYPE_CHECKING:
    from trtdet.detections import Detections
    from trtdet.geometry import AffineTransform
    from trtdet.postprocess.decoder import Decoder


def class_ids(classes: Sequence[str | int], class_names: Sequence[str]) -> tuple[int, ...]:
    """The ids of ``classes`` (names or ids) among ``class_names``; an unknown one is a ``UsageError``."""
    ids: list[int] = []
    for item in classes:
        if isinstance(item, int):
            if not 0 <= item < len(class_names):
                raise UsageError(f"classes: id {item} is out of range (the model has {len(class_names)} classes, 0..{len(class_names) - 1})")
            ids.append(item)
        elif item in class_names:
            ids.append(list(class_names).index(item))
        else:
            close = difflib.get_close_matches(item, list(class_names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise UsageError(f"classes: the model has no class {item!r} (it has: {shown}){hint}")
    return tuple(dict.fromkeys(ids))


class ClassFilter:
    """A ``Decoder`` keeping only detections of ``keep`` ids, at most ``max_det`` (best first) per image.

    The filter runs after the model's own decode (and NMS, which is per class unless agnostic,
    so filtering before or after it keeps the same boxes).
    """

    def __init__(self, decoder: Decoder, keep: Sequence[int], max_det: int | None = None) -> None:
        self.decoder = decoder
        self.keep = np.asarray(sorted(keep), np.int64)
        self.max_det = max_det

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        self.decoder.validate(output_shapes, source)

    def __call__(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> list[Detections]:
        return self._filter(self.decoder(outputs, transforms))

    def _filter(self, decoded: list[Detections]) -> list[Detections]:
        results = []
        for detections in decoded:
            kept = detections[np.isin(detections.class_id, self.keep)]
            if self.max_det is not None and len(kept) > self.max_det:
                kept = kept[np.argsort(-kept.confidence, kind="stable")[: self.max_det]]
            results.append(kept)
        return results

    def __getattr__(self, name: str) -> Any:  # the wrapped decoder's settings (conf_threshold, ...)
        if name in ("decoder", "queue", "collect", "graph_plan"):  # queuing is declared, never borrowed unfiltered
            raise AttributeError(name)
        return getattr(self.decoder, name)


class QueuingClassFilter(ClassFilter):
    """``ClassFilter`` around a ``QueuingDecoder``: queues through it and filters what it collects."""

    def queue(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> Any:
        return self.decoder.queue(outputs, transforms)  # type: ignore[attr-defined]

    def collect(self, queued: Any) -> list[Detections]:
        return self._filter(self.decoder.collect(queued))  # type: ignore[attr-defined]

    def graph_plan(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> Any:
        """The wrapped decoder's plan for a captured pipeline (``GraphDecode``), filtering what it reads."""
        plan = self.decoder.graph_plan(outputs, transforms)  # type: ignore[attr-defined]
        read = plan._read
        plan._read = lambda host: self._filter(read(host))
        return plan


def class_filter(decoder: Decoder, keep: Sequence[int], max_det: int | None = None) -> ClassFilter:
    """``decoder`` keeping only the classes ``keep``; a queuing decoder stays a queuing one."""
    if isinstance(decoder, QueuingDecoder):
        return QueuingClassFilter(decoder, keep, max_det)
    return ClassFilter(decoder, keep, max_det)
