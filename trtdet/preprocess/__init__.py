"""Preprocessing: the shared letterbox warp-affine (CPU here, CUDA in ``trtdet.preprocess.cuda``)."""

from trtdet.preprocess.affine import AffineTransform, letterbox_transform
from trtdet.preprocess.base import PreprocessedBatch, Preprocessor
from trtdet.preprocess.cpu import WarpAffinePreprocessor

__all__ = [
    "AffineTransform",
    "PreprocessedBatch",
    "Preprocessor",
    "WarpAffinePreprocessor",
    "letterbox_transform",
]
