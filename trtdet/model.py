"""ModelSpec: everything the core needs to know about a detector, supplied by its plugin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from trtdet.postprocess.decoder import Decoder, QueuingDecoder

__all__ = ["Decoder", "Exporter", "ModelSpec", "QueuingDecoder"]  # Decoder: re-exported for plugins


class Exporter(Protocol):
    """Turns a framework checkpoint into an ONNX file the engines can load."""

    def __call__(
        self, weights: Path, output: Path, *, input_size: tuple[int, int], dynamic_batch: bool
    ) -> Path: ...


@dataclass(frozen=True)
class ModelSpec:
    """A detector family as a plugin describes it.

    ``mean``/``std`` are per channel in the network's channel order and apply after
    scaling pixels to [0, 1]: ``(x / 255 - mean) / std``. ``border_value`` fills the
    letterbox padding (0..255, before normalisation). ``input_size`` is (H, W).
    ``letterbox`` is the geometry the core preprocessor uses (``trtdet.preprocess.letterbox``):
    ``"warp"`` (one sub-pixel affine warp, tensorRT_Pro / CenterNet style), ``"square"``
    (alias ``"ultralytics"``: resize then pad by whole pixels to ``input_size``, as models
    trained with Ultralytics saw), ``"rect"`` (the same, padded only to a multiple of
    ``stride`` when a batch's images share a shape and the model file allows any H and W;
    ``spec_adapt`` turns it into ``square`` otherwise) or ``"stretch"`` (resize, aspect not kept).
    """

    name: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    channel_order: Literal["BGR", "RGB"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    border_value: int = 114
    letterbox: Literal["rect", "square", "warp", "stretch", "ultralytics"] = "warp"
    stride: int | None = None
    #: The multiple the network input's height and width must be (the trunk's total
    #: downsampling: 32 for YOLO and CenterNet's ResNet, whatever their output stride).
    #: ``trtdet val --keep-res`` pads each image's size up to it (None: not declared, so
    #: ``--keep-res`` cannot run the model).
    input_multiple: int | None = None
    num_channels: int | None = None
    conf_threshold: float = 0.25
    iou_threshold: float | None = None
    max_detections: int = 300
    #: NMS across classes (a kept box suppresses overlapping boxes of any class), for decoders
    #: that run NMS; the default is class-aware NMS.
    agnostic_nms: bool = False
    description: str = ""
    #: Set when the shipped default weights are a demo rather than a model to use (e.g. trained on
    #: synthetic data): what they detect. ``trtdet models`` shows it beside the default file.
    demo_weights: str | None = None
    #: Returns the path of the model file used when the user names none (None: no default).
    default_model: Callable[[], Path] | None = None
    #: Converts ``--weights`` checkpoints to ONNX (None: the model has no checkpoint format).
    exporter: Exporter | None = None
    #: Rewrites a third-party ONNX layout (e.g. a legacy tutorial export) into the one this
    #: plugin decodes: ``convert(src, dst) -> dst`` (None: nothing to convert).
    onnx_converter: Callable[[Path, Path], Path] | None = None
    #: Builds the network (eval mode) from a checkpoint for the torch backend; its forward
    #: returns the same single output as the ONNX export (None: the torch backend needs ONNX).
    #: A ``trtdet_metadata`` dict attribute on the module plays the ONNX metadata's role.
    torch_model: Callable[[Path], Any] | None = None
    #: Names what, besides the model file, decides the network a compiled engine holds (e.g.
    #: which DCN kernel a CenterNet network calls); it enters compiled packages' cache keys, so
    #: switching it rebuilds rather than reusing a package made the other way (None: nothing).
    engine_variant: Callable[[], str] | None = None
    #: Returns a sample image path shown with no ``--source`` (None: the core's sample photo).
    sample_image: Callable[[], Path] | None = None
    #: Take class names from the model file's ``names`` metadata when it has them. False keeps
    #: ``class_names`` as given: for a plugin that decodes a subset of a file's classes (e.g. a
    #: person-only detector on a COCO model) or names them differently.
    names_from_model: bool = True
    #: Free-form extras a plugin wants to carry (e.g. ``{"head": "v8"}``).
    extras: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.input_multiple is not None and (
            not isinstance(self.input_multiple, int) or isinstance(self.input_multiple, bool) or self.input_multiple < 1
        ):
            raise ValueError(f"model {self.name!r}: input_multiple must be an integer >= 1, got {self.input_multiple!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
