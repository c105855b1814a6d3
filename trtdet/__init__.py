"""trtdet: trained detectors as fast inference pipelines, every model supplied by a plugin."""

from __future__ import annotations

from trtdet.api import load
from trtdet.detections import Detections
from trtdet.errors import CorruptImageWarning, InputError, ModelError, TrtdetError, UsageError
from trtdet.hookspecs import hookimpl
from trtdet.io.draw import draw
from trtdet.io.pinned import pinned_frames
from trtdet.model import Decoder, ModelSpec
from trtdet.pipeline import Detector
from trtdet.preprocess.affine import AffineTransform, letterbox_transform
from trtdet.version import __version__

__all__ = [
    "AffineTransform",
    "CorruptImageWarning",
    "Decoder",
    "Detections",
    "Detector",
    "InputError",
    "ModelError",
    "ModelSpec",
    "TrtdetError",
    "UsageError",
    "__version__",
    "draw",
    "hookimpl",
    "letterbox_transform",
    "load",
    "pinned_frames",
]
