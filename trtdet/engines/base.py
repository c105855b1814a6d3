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
    """A loaded network, a runner in Polygraphy's sense: activate it, call it, deactivate it.

    Constructing one is cheap; ``activate()`` does the heavy work (creating the session,
    building or deserialising the engine, moving weights to the device) and
    ``deactivate()`` releases it. ``with engine:`` does both. The attributes below are
    known once the engine is active.

    Calling an active engine runs one batch ``[B, 3, H, W]`` (a numpy array or a torch
    tensor) and returns ``{name: [B, ...]}``: numpy arrays on ``device="cpu"``, torch CUDA
    tensors (ordered on torch's current stream, not synchronised) on ``device="cuda"``,
    always, whatever the input type.
    """

    backend: str
    #: ``"cpu"`` or ``"cuda"``: where the outputs live.
    device: str
    is_active: bool
    input_name: str
    input_shape: Shape
    output_shapes: dict[str, Shape]
    #: Largest batch the engine accepts (None: unbounded).
    max_batch: int | None
    #: Metadata stored in the model file (ONNX ``metadata_props``, engine header). The key
    #: ``names`` (a JSON list, or Ultralytics' ``{0: 'person', ...}``) overrides the spec's
    #: class names, so an exported model carries its own classes.
    metadata: dict[str, str]

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    def __call__(self, batch: Any) -> dict[str, Any]: ...


class BaseEngine:
    """The runner lifecycle shared by the built-in engines (subclasses fill in the ``_impl`` methods).

    ``activate_impl`` does the heavy work and sets ``input_name``, ``input_shape``,
    ``output_shapes``, ``max_batch`` and ``metadata``; ``deactivate_impl`` releases it;
    ``infer_impl(batch)`` runs one batch and returns outputs on ``device`` (see ``Engine``).
    """

    backend = "?"

    def __init__(self, device: str) -> None:
        self.device = device
        self.is_active = False

    def activate(self) -> None:
        """Do the heavy work (idempotent)."""
        if self.is_active:
            return
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        """Release what ``activate`` acquired (idempotent)."""
        if not self.is_active:
            return
        try:
            self.deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> BaseEngine:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __call__(self, batch: Any) -> dict[str, Any]:
        if not self.is_active:
            raise RuntimeError(f"the {self.backend} engine is not active: use `with engine:` or engine.activate()")
        return self.infer_impl(batch)

    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        raise NotImplementedError


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
        """The engine of ``model_file`` for ``spec`` on ``options.device``, not yet active.

        ``options`` is the object ``trtdet.load`` was given (precision, largest batch, CUDA
        graphs, plugin build options, ...); a backend reads the fields it has a use for.
        Cheap checks may raise here; heavy work belongs in the engine's ``activate``. Either
        raises ``ModelError`` naming the file.
        """
        ...
