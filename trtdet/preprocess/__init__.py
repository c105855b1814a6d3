"""Preprocessing: the shared letterbox, warp or resize-and-pad (CPU here, CUDA in ``trtdet.preprocess.cuda``)."""

from trtdet.geometry import AffineTransform, letterbox_transform
from trtdet.preprocess.base import PreprocessedBatch, Preprocessor
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.preprocess.letterbox import LETTERBOXES, ultralytics_letterbox

__all__ = [
    "LETTERBOXES",
    "AffineTransform",
    "PreprocessedBatch",
    "Preprocessor",
    "WarpAffinePreprocessor",
    "letterbox_transform",
    "ultralytics_letterbox",
]
