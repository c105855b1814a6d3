"""``Model``: a detector family as one registered object, carrying its spec and its behaviour.

A plugin registers model objects through ``trtdet_register_models(register)`` (as simonw/llm
registers model objects). A ``Model`` owns its ``ModelSpec``, the factories of its decoder and
preprocessor (the preprocessor defaults to the core's letterbox one), its exporter (on the spec)
and the engine build steps it contributes. The core calls the factories once per detector with
the adapted spec and the ``RunContext``; nothing dispatches on the model's name.

On a GPU the model's ``cuda_decoder`` is used when it can be built; an ``ImportError`` (no numba)
falls back to its host ``decoder`` behind ``HostDecoder`` -- written here once for every model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtdet.context import RunContext
from trtdet.errors import ModelError
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.postprocess.decoder import Decoder
from trtdet.postprocess.host import HostDecoder

if TYPE_CHECKING:
    from trtdet.contracts.build_steps import BuildStep
    from trtdet.preprocess.base import Preprocessor

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

#: Makes a model's decoder for the (adapted) spec and the run context.
DecoderFactory = Callable[[ModelSpec, RunContext], Decoder]
#: Makes a model's preprocessor for the (adapted) spec and the run context.
PreprocessorFactory = Callable[[ModelSpec, RunContext], "Preprocessor"]


class NoDecoderError(ModelError):
    """The model has no decoder (a bare ``ModelSpec`` no plugin's hook decodes); callers prefix the file."""


def letterbox_preprocessor(spec: ModelSpec, context: RunContext) -> Preprocessor:
    """The core's preprocessor: the spec's letterbox geometry, on the CPU (OpenCV) or the GPU (one kernel).

    On an fp16 GPU pipeline it writes float16 directly (the engine's input precision).
    """
    from trtdet.preprocess.base import LetterboxSettings

    settings = LetterboxSettings.of_spec(spec)
    if context.is_cuda:
        from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

        dtype = torch.float16 if context.half else torch.float32
        return CudaWarpAffinePreprocessor.from_settings(settings, dtype=dtype)
    from trtdet.preprocess.cpu import WarpAffinePreprocessor

    return WarpAffinePreprocessor.from_settings(settings)


@dataclass(frozen=True)
class Model:
    """A registered model: its ``spec`` plus the factories that make its pipeline stages.

    * ``decoder(spec, context)``: the decoder reading numpy outputs (required to run).
    * ``cuda_decoder(spec, context)``: a decoder reading torch CUDA outputs, used on GPUs
      (None, or an ``ImportError`` while making it: the host ``decoder`` behind ``HostDecoder``).
    * ``preprocessor(spec, context)``: None uses the core's letterbox preprocessor.
    * ``build_steps()``: the engine build steps this model contributes (called when the
      installed steps are listed, so a step needing ``onnx`` imports it only then).
    """

    spec: ModelSpec
    decoder: DecoderFactory | None = None
    cuda_decoder: DecoderFactory | None = None
    preprocessor: PreprocessorFactory | None = None
    build_steps: Callable[[], Iterable[BuildStep]] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def make_decoder(self, spec: ModelSpec, context: RunContext) -> Decoder:
        """The decoder for ``spec`` (this model's spec with the run's overrides) in ``context``."""
        if self.decoder is None:
            raise NoDecoderError(f"no installed plugin decodes model {spec.name!r}")
        if context.is_cuda:
            if self.cuda_decoder is not None:
                try:
                    return self.cuda_decoder(spec, context)
                except ImportError:  # no numba: decode on the host
                    pass
            return HostDecoder(self.decoder(spec, context))
        return self.decoder(spec, context)

    def make_preprocessor(self, spec: ModelSpec, context: RunContext) -> Preprocessor:
        """The preprocessor for ``spec`` in ``context`` (the core's letterbox one unless the model has its own)."""
        factory = self.preprocessor or letterbox_preprocessor
        return factory(spec, context)

    def steps(self) -> tuple[BuildStep, ...]:
        """The engine build steps this model contributes."""
        return tuple(self.build_steps()) if self.build_steps is not None else ()
