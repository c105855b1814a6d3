"""trtdet: trained detectors as fast inference pipelines, every model supplied by a plugin."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trtdet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from trtdet.api import load  # noqa: E402 - after the names the loaders import from here
from trtdet.context import RunContext
from trtdet.detections import Detections
from trtdet.errors import CorruptImageWarning, InputError, ModelError, TrtdetError, UsageError
from trtdet.geometry import AffineTransform, letterbox_transform
from trtdet.hookspecs import hookimpl
from trtdet.io.draw import draw  # noqa: E402
from trtdet.io.pinned import pinned_frames
from trtdet.model import ModelSpec
from trtdet.models import Model
from trtdet.pipeline import Detector  # noqa: E402
from trtdet.postprocess.decoder import Decoder

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
