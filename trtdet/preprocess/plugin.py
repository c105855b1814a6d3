"""Built-in plugin: the letterbox preprocessor (the model's ``letterbox`` geometry), offered last for every model."""

from __future__ import annotations

from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.preprocess.base import Preprocessor


@hookimpl(trylast=True)
def trtdet_preprocessor(model: ModelSpec, device: str) -> Preprocessor | None:
    options = dict(
        mean=model.mean,
        std=model.std,
        channel_order=model.channel_order,
        border_value=model.border_value,
        letterbox=model.letterbox,
        stride=model.stride or 32,
    )
    if device == "cuda":
        from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

        return CudaWarpAffinePreprocessor(model.input_size, **options)
    from trtdet.preprocess.cpu import WarpAffinePreprocessor

    return WarpAffinePreprocessor(model.input_size, **options)
