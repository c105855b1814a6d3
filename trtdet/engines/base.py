"""The engine contract: a loaded network that maps an input batch to named outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from trtdet.model import ModelSpec

if TYPE_CHECKING:
    from trtdet.options import DetectorOptions

ModelFileKind = Literal["onnx", "engine", "package", "weights"]
Shape = tuple[int | str | None, ...]


@dataclass(frozen=True)
class ModelFile:
    """A model file and what kind it is: ``onnx``, a TensorRT ``engine``, an AOTInductor ``package``
    (``.pt2``), or framework ``weights``."""

    path: Path
    kind: ModelFileKind


class Engine(Protocol):
    """A loaded network. Calling it runs one batch ``[B, 3, H, W]`` and returns ``{name: [B, ...]}``."""

    backend: str
    input_name: str
    input_shape: Shape
    output_shapes: dict[str, Shape]
    #: Largest batch the engine accepts (None: unbounded).
    max_batch: int | None
    #: Metadata stored in the model file (ONNX ``metadata_props``, engine header). The key
    #: ``names`` (a JSON list, or Ultralytics' ``{0: 'person', ...}``) overrides the spec's
    #: class names, so an exported model carries its own classes.
    metadata: dict[str, str]

    def __call__(self, batch: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EngineBackend(Protocol):
    """A way to run networks, registered through the ``trtdet_engine_backends`` hook."""

    #: Name used by ``--backend``.
    name: str
    #: ``--backend auto`` picks the available backend with the highest priority.
    priority: int
    #: Model file kinds this backend can load.
    file_kinds: tuple[ModelFileKind, ...]

    def unavailable_reason(self, device: str) -> str | None:
        """None when usable on ``device`` (``cpu``/``cuda``), else a one-line reason."""
        ...

    def load(self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions) -> Engine:
        """Load ``model_file`` for ``spec`` on ``options.device``; raise ``ModelError`` naming the file.

        ``options`` is the object ``trtdet.load`` was given (precision, largest batch, CUDA
        graphs, plugin build options, ...); a backend reads the fields it has a use for.
        """
        ...
