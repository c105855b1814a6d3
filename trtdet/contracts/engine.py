"""The engine contract: a backend builds model files into artifacts and loads them as engines,
networks that map an input batch to named outputs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from trtdet.errors import ModelError, UsageError
from trtdet.model import ModelSpec

if TYPE_CHECKING:
    from trtdet.context import RunContext
    from trtdet.contracts.artifact import ArtifactMetadata
    from trtdet.options import DetectorOptions

ModelFileKind = Literal["onnx", "engine", "package", "weights"]
Shape = tuple[int | str | None, ...]
#: Receives one-line progress messages of a build.
Report = Callable[[str], None]


@dataclass(frozen=True)
class ModelFile:
    """A model file and what kind it is: ``onnx``, a TensorRT ``engine``, an AOTInductor ``package``
    (``.pt2``), or framework ``weights``."""

    path: Path
    kind: ModelFileKind


def existing_file(path: str | Path) -> Path:
    """``path`` as a ``Path``; ``ModelError`` (``PATH: model file not found``) when it is no file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    return path


@dataclass(frozen=True)
class BuildRequest:
    """How a build is wanted, besides the run context (device, precision, largest batch, build options)."""

    #: Where a copy of the artifact goes (None: it stays in the artifact cache only).
    output: Path | None = None
    #: Whether an artifact the cache holds under the same key may answer instead of a build.
    use_cache: bool = True
    #: Which runtime of the backend builds, e.g. TensorRT's ``tensorrt`` or ``rtx`` (None: the backend picks).
    runtime: str | None = None
    #: Receives one-line progress messages (None: silence).
    report: Report | None = None


#: A build into the cache alone, silent, the runtime left to the backend.
CACHE_ONLY = BuildRequest()


class Artifact(Protocol):
    """A built (or cached) artifact: the file, its metadata, and how it came to be."""

    path: Path
    metadata: ArtifactMetadata
    #: True when the cache answered, False when it was built now.
    cached: bool
    seconds: float

    def describe(self) -> str:
        """One line on how it was made and what it holds (``trtdet build`` prints ``wrote PATH (LINE)``)."""
        ...


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


@runtime_checkable
class RunsOnProviders(Protocol):
    """An engine that runs on execution providers (optional; the ONNX Runtime one does):
    ``providers`` in the order the runtime tries them, the first being the one it uses
    (``trtdet run`` names it: ``on onnxruntime (CUDAExecutionProvider)``)."""

    providers: list[Any]


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
    """A way to run networks, registered through the ``trtdet_engine_backends`` hook.

    The members below ``artifact_suffix`` are optional for a backend: ``BackendDefaults`` gives
    each its default (subclass it), and the registry completes a backend that does not
    (``complete_backend``), so every registered backend has all of them.
    """

    #: Name used by ``--backend``.
    name: str
    #: ``--backend auto`` picks the available backend with the highest priority.
    priority: int
    #: Model file kinds this backend can load.
    file_kinds: tuple[ModelFileKind, ...]
    #: Suffix of the artifacts ``build`` makes (``trtdet build`` writes ``SOURCE`` with it by default).
    artifact_suffix: str
    #: Device kinds it runs and builds for. ``--device auto`` (the default) means the GPU when one
    #: is visible, else the CPU -- except for a backend without ``cpu`` here, for which it is the
    #: GPU (``trtdet build`` of a TensorRT engine; TensorRT-RTX builds one without a GPU).
    device_kinds: tuple[str, ...]

    def auto_priority(self, device: str) -> int:
        """Its rank for ``--backend auto`` on ``device`` (``cpu``/``cuda``); default: ``priority``."""
        ...

    def unavailable_reason(self, device: str) -> str | None:
        """None when usable on ``device`` (``cpu``/``cuda``), else a one-line reason."""
        ...

    def load(self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext) -> Engine:
        """The engine of ``model_file`` for ``spec`` on ``context.device``, not yet active.

        ``context`` is the run context ``trtdet.load`` resolved (the ``Device``, precision,
        largest batch and, on a GPU, the pipeline's stream); ``options`` is the object
        ``trtdet.load`` was given (CUDA graphs, plugin build options, ...); a backend reads
        what it has a use for. A backend whose ``load`` takes only ``(model_file, spec,
        options)`` (written before the context existed) is still called that way. Cheap checks
        may raise here; heavy work belongs in the engine's ``activate``. Either raises
        ``ModelError`` naming the file.
        """
        ...

    def build(self, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY) -> Artifact:
        """Build ``source`` for ``spec`` into the artifact cache, or fetch it from there, as the
        resolved ``context`` says: ``context.device`` (a parsed ``Device``), ``precision``,
        ``batch`` (the largest the artifact accepts) and ``build_options`` (``context.options``
        holds the rest of the ``DetectorOptions``). ``request`` says where a copy goes and how.
        ``UsageError`` when this backend cannot build it so, ``ModelError`` naming the file when
        the file is the problem. A backend whose ``build`` takes ``options`` third (written
        before the context reached builds) is still called with the ``DetectorOptions``
        (``build_with``)."""
        ...


class BackendDefaults:
    """The optional ``EngineBackend`` members with their defaults: a backend subclasses this and
    overrides what differs (the built-in backends do)."""

    name: str
    priority: int = 0
    file_kinds: tuple[ModelFileKind, ...] = ()
    artifact_suffix: str = ""
    device_kinds: tuple[str, ...] = ("cpu", "cuda")

    def auto_priority(self, device: str) -> int:
        """Its rank for ``--backend auto``: ``priority`` on every device."""
        return int(self.priority)

    def unavailable_reason(self, device: str) -> str | None:
        """Usable everywhere unless a subclass says otherwise."""
        return None



def auto_device_for(backend: EngineBackend) -> str:
    """What ``--device auto`` means for ``backend``: ``cuda`` for one without ``cpu`` in its
    ``device_kinds``, else the GPU when one is visible (``trtdet.devices.auto_device``)."""
    from trtdet.devices import auto_device

    return "cuda" if "cpu" not in backend.device_kinds else auto_device()


#: The members ``BackendDefaults`` gives a backend that lacks them.
OPTIONAL_MEMBERS = ("artifact_suffix", "device_kinds", "auto_priority", "unavailable_reason")


class _Completed(BackendDefaults):
    """A backend that does not subclass ``BackendDefaults`` and lacks some optional members:
    those it has are its own, the rest are the defaults; ``load`` gets the context only when
    the backend's ``load`` takes it, ``build`` the options instead of the context when its
    ``build`` predates the context (``build_with``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name
        self.priority = backend.priority
        self.file_kinds = tuple(backend.file_kinds)
        for member in OPTIONAL_MEMBERS:
            if hasattr(backend, member):
                setattr(self, member, getattr(backend, member))
        try:
            parameters = inspect.signature(backend.load).parameters
        except (TypeError, ValueError):
            parameters = {}
        self._load_takes_context = len(parameters) >= 4 or "context" in parameters

    def load(self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext) -> Engine:
        if self._load_takes_context:
            return self.backend.load(model_file, spec, options, context)
        return self.backend.load(model_file, spec, options)

    def build(self, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY) -> Artifact:
        return build_with(self.backend, source, spec, context, request)

    def __getattr__(self, name: str) -> Any:
        """Members outside the contract (a plugin's own) are the backend's."""
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)


def complete_backend(backend: Any) -> EngineBackend:
    """``backend`` with every ``EngineBackend`` member: itself when it subclasses ``BackendDefaults``,
    else a ``_Completed`` view of it. The registry calls this once per registered backend."""
    return backend if isinstance(backend, BackendDefaults) else _Completed(backend)


class LoadsOnly(BackendDefaults):
    """For backends that run model files as they are: ``build`` refuses in one line."""

    name: str
    file_kinds: tuple[ModelFileKind, ...]
    artifact_suffix = ""

    def build(self, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY) -> Artifact:
        raise UsageError(
            f"backend {self.name!r} builds nothing ahead of time: it runs {', '.join(self.file_kinds)} files as they are"
        )


def build_takes_context(build: Callable[..., Any]) -> bool:
    """Whether a backend's ``build`` takes the ``RunContext`` third: False for one written for the
    contract before it (third parameter named ``options``, or annotated ``DetectorOptions``)."""
    try:
        parameters = list(inspect.signature(build).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3:
        return True
    third = positional[2]
    return third.name != "options" and "DetectorOptions" not in str(third.annotation)


def build_with(
    backend: EngineBackend, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY
) -> Artifact:
    """``backend.build`` of ``source`` with the resolved ``context``, or, for a backend whose ``build``
    predates it (``build_takes_context``), with ``context.options`` (whose device, precision and
    batch are the context's): ``trtdet build`` calls every backend through this."""
    if build_takes_context(backend.build):
        return backend.build(source, spec, context, request)
    return backend.build(source, spec, context.options, request)
