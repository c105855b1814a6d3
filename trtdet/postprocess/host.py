"""Running a CPU decoder on a CUDA pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trtdet.detections import Detections
    from trtdet.geometry import AffineTransform
    from trtdet.postprocess.decoder import Decoder


class HostDecoder:
    """A ``Decoder`` for ``device="cuda"`` that copies the outputs to the host for a CPU decoder.

    On a CUDA pipeline engines return torch CUDA tensors (see ``trtdet.contracts.engine.Engine``);
    a plugin without a GPU decoder wraps its numpy decoder in this: one copy per output and
    batch (as float32), then ``decoder(outputs, transforms)`` on numpy arrays.
    """

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        self.decoder.validate(output_shapes, source)

    def __call__(self, outputs: dict[str, Any], transforms: Sequence[AffineTransform]) -> list[Detections]:
        host = {name: np.asarray(value.detach().float().cpu().numpy()) for name, value in outputs.items()}
        return self.decoder(host, transforms)

    def __getattr__(self, name: str) -> Any:  # the wrapped decoder's settings (output_name, ...)
        if name in ("decoder", "queue", "collect"):  # a host decoder never queues on the GPU
            raise AttributeError(name)
        return getattr(self.decoder, name)
