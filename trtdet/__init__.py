"""trtdet: trained detectors as fast inference pipelines, every model supplied by a plugin."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trtdet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from trtdet.detections import Detections
from trtdet.errors import InputError, ModelError, TrtdetError, UsageError
from trtdet.hookspecs import hookimpl
from trtdet.model import Decoder, ModelSpec
from trtdet.preprocess.affine import AffineTransform, letterbox_transform


def load(model: str, **options):  # noqa: ANN201 - re-exported from trtdet.api
    """Build a detector for ``model``; see ``trtdet.api.load`` for the options."""
    from trtdet.api import load as _load

    return _load(model, **options)


__all__ = [
    "AffineTransform",
    "Decoder",
    "Detections",
    "InputError",
    "ModelError",
    "ModelSpec",
    "TrtdetError",
    "UsageError",
    "__version__",
    "hookimpl",
    "letterbox_transform",
    "load",
]
