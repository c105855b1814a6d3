"""The decode stage's contract: ``Decoder`` (and ``QueuingDecoder`` for GPU decoders that queue).

A model's decoder turns an engine's raw outputs into ``Detections``; it lives here, beside
the shared post-processing it uses, and ``trtdet.model`` re-exports it for plugins written
against earlier versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from trtdet.detections import Detections
from trtdet.geometry import AffineTransform


class Decoder(Protocol):
    """Turns raw engine outputs of a batch into one ``Detections`` per image.

    ``outputs`` maps output names to ``[B, ...]`` arrays (numpy on CPU; torch CUDA tensors
    on the GPU path); ``transforms[i]`` is the affine transform preprocess used for image i.
    """

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        """Raise ``ModelError`` naming ``source`` if the outputs cannot be this model's head."""
        ...

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]: ...


@runtime_checkable
class QueuingDecoder(Decoder, Protocol):
    """A decoder that can queue a batch's decode and hand the results over later.

    ``queue(outputs, transforms)`` queues the work on the current stream (reading the engine's
    outputs there, in stream order) and returns a handle without waiting; ``collect(handle)``
    waits for it and returns the detections. With such a decoder the GPU pipeline keeps two
    batches launched, so no gap opens on the GPU between batches: two batches may be queued
    and not collected (a decoder keeps two sets of result buffers), never three.
    ``collect`` must not read the engine's outputs (the next batch may have overwritten them);
    it may raise to have the batch's images rerun one by one through ``__call__``.
    The pipeline tells the two kinds apart with ``isinstance(decoder, QueuingDecoder)``.
    """

    def queue(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> Any: ...

    def collect(self, queued: Any) -> list[Detections]: ...
