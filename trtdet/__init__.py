"""trtdet: trained detectors as fast inference pipelines, every model supplied by a plugin."""

from __future__ import annotations

from trtdet.api import load
from trtdet.context import RunContext
from trtdet.detections import Detections
from trtdet.errors import CorruptImageWarning, InputError, ModelError, TrtdetError, UsageError
from trtdet.geometry import AffineTransform, letterbox_transform
from trtdet.hookspecs import hookimpl
from trtdet.io.draw import draw
from trtdet.io.pinned import pinned_frames
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.pipeline import Detector
from trtdet.postprocess.decoder import Decoder
from trtdet.results import Result
from trtdet.version import __version__

__all__ = [
    "AffineTransform",
    "CorruptImageWarning",
    "Decoder",
    "Detections",
    "Detector",
    "InputError",
    "Model",
    "ModelError",
    "ModelSpec",
    "Result",
    "RunContext",
    "TrtdetError",
    "UsageError",
    "__version__",
    "draw",
    "hookimpl",
    "letterbox_transform",
    "load",
    "pinned_frames",
]
