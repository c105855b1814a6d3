"""Rect letterbox on engines of a fixed input size: one engine per input shape bucket.

Under the ``rect`` letterbox a batch of same-shape images has the stride-padded size of that
shape (384x640 for 1080p and any 16:9 frame at 640); the scheduler never mixes shapes in a
batch, and a batch of mixed shapes is the full ``input_size`` (square). Compiled engines
(AOTInductor packages) and ONNX files converted to torch are folded for one input size, so
``BucketEngine`` holds one engine per (H, W) it has met, made by a ``BucketSource`` on first
use: an inductor package comes from the package cache (keyed by the file's sha256, precision,
largest batch and the input H x W, like every package), compiled first when it is not there --
once, with one line on stderr, the only wait (``trtdet build --input-size H W`` prebuilds it).

At most ``keep`` engines stay active (least recently used deactivated first; 4 by default:
a deployment meets one or two camera shapes and the square of mixed batches, and each active
package holds its weights and its CUDA graphs on the GPU). A deactivated bucket is loaded
again from the cache when it returns.

A folder of photos of many sizes would compile a package per shape: after ``compile_budget``
compiles (4 by default) in one detector, an uncached bucket runs on the source's fallback
(eager torch for inductor: the same network at that size, same detections, slower), with one
line saying so and how to prebuild.

Why per bucket and not one program with a dynamic H and W: trtdet's ONNX -> torch converter
folds every shape computation (anchor grids, reshapes) for the input size; ``torch.export``
with a dynamic H/W of such a module records a guard pinning H*W, and the exported program
refuses any other size. Static shapes also keep Inductor's kernels and CUDA graphs specialised.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trtdet.contracts.engine import BaseEngine, Engine, Shape
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

#: Engines kept active at once (see the module docstring).
DEFAULT_ACTIVE_BUCKETS = 4
#: Buckets one detector compiles at run time before uncached ones run on the fallback.
DEFAULT_COMPILE_BUDGET = 4

Size = tuple[int, int]


class BucketSource(Protocol):
    """Makes the engine of one input size for a ``BucketEngine``."""

    #: The backend name the engines report (``inductor``, ``torch``).
    backend: str

    def engine(self, size: Size) -> Engine:
        """The (inactive) engine for batches of input ``size`` (H, W)."""
        ...

    def is_built(self, size: Size) -> bool:
        """Whether ``engine(size)`` needs no compile (a cache hit, or a backend that compiles nothing)."""
        ...

    def fallback(self, size: Size) -> Engine:
        """An engine for ``size`` that needs no compile (run once the compile budget is spent)."""
        ...

    def describe(self) -> Description:
        """What every bucket's engine will say of itself, known without making one."""
        ...


@dataclass(frozen=True)
class Description:
    """The engine attributes a detector reads on activation, the same for every bucket."""

    output_names: tuple[str, ...]
    metadata: dict[str, str]
    max_batch: int | None
    #: Output shapes as the file declares them (dimension names for dynamic ones; ``()`` unknown):
    #: the detector checks its head against these, with no trial run that would make an engine.
    output_shapes: dict[str, Shape] = field(default_factory=dict)


def describe_onnx(path: Any, max_batch: int | None) -> Description:
    """An ONNX file's output names, declared output shapes and metadata (what its converted network
    and packages report), weights unread."""
    model = onnx.load(str(path), load_external_data=False)
    shapes: dict[str, Shape] = {}
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim if output.type.tensor_type.HasField("shape") else []
        shapes[output.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    return Description(tuple(shapes), {p.key: p.value for p in model.metadata_props}, max_batch, shapes)


def rect_bucket(image_size: tuple[int, int], input_size: tuple[int, int], stride: int = 32) -> Size:
    """The input (H, W) the rect letterbox gives a batch of images of ``image_size`` (H, W)."""
    from trtdet.preprocess.letterbox import make_transform

    transform = make_transform("rect", (int(image_size[0]), int(image_size[1])), tuple(input_size), stride=stride, auto=True)
    return int(transform.dst_size[0]), int(transform.dst_size[1])


class BucketEngine(BaseEngine):
    """An engine that runs each batch on the engine made for its input (H, W).

    ``input_shape`` is ``(None, 3, None, None)``: the detector keeps the rect letterbox.
    Activation makes no engine (the source describes the outputs), so a deployment whose
    buckets are prebuilt never compiles, not even the full ``base_size`` it never meets; each
    bucket's engine is made on its first batch. ``announce`` receives one line when a bucket
    has to be compiled (default: stderr).
    """

    def __init__(self, source: BucketSource, base_size: Size, device: str, *, keep: int = DEFAULT_ACTIVE_BUCKETS,
                 compile_budget: int = DEFAULT_COMPILE_BUDGET, announce: Callable[[str], None] | None = None) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        super().__init__(device)
        self.source = source
        self.backend = source.backend
        self.base_size: Size = (int(base_size[0]), int(base_size[1]))
        self.keep = keep
        #: Compiles left before uncached buckets run on ``source.fallback``.
        self.compile_budget = compile_budget
        #: Sizes that ran on the fallback (said once each).
        self.fell_back: set[Size] = set()
        self.announce = announce or _stderr
        self.input_name = "images"
        self.input_shape: Shape = (None, 3, None, None)
        self.output_shapes: dict[str, Shape] = {}
        self.max_batch: int | None = None
        self.metadata: dict[str, str] = {}
        #: Active engines by input size, least recently used first.
        self.active: OrderedDict[Size, Engine] = OrderedDict()
        #: Called with a size before its engine is deactivated (whole-pipeline CUDA graphs that
        #: recorded that engine drop themselves: ``trtdet.cuda.pipeline_graph``).
        self.eviction_listeners: list[Callable[[Size], None]] = []

    @property
    def cuda_graphs(self) -> bool:
        """Whether the bucket engines replay CUDA graphs (the source's setting; pipeline graphs need it)."""
        return bool(getattr(self.source, "cuda_graphs", False))

    def ungraphed_call(self, batch: Any) -> dict[str, Any]:
        """The batch through its bucket's engine, outside that engine's own CUDA graph: what a whole-
        pipeline graph records. A bucket whose engine has no such call (eager fallback) raises."""
        height, width = (int(d) for d in batch.shape[-2:])
        engine = self.engine_for((height, width))
        call = getattr(engine, "ungraphed_call", None)
        if call is None:
            raise RuntimeError(f"the {engine.backend} engine of input {height}x{width} cannot run outside its own graph")
        return call(batch)

    def engine_for(self, size: Size) -> Engine:
        """The active engine of ``size``, made (and compiled when not cached) on first use."""
        size = (int(size[0]), int(size[1]))
        engine = self.active.get(size)
        if engine is not None:
            self.active.move_to_end(size)
            return engine
        prebuild = f"`trtdet build --backend {self.source.backend} --input-size {size[0]} {size[1]}` prebuilds it"
        if self.source.is_built(size):
            engine = self.source.engine(size)
        elif self.compile_budget > 0:
            self.compile_budget -= 1
            self.announce(f"rect letterbox: input {size[0]}x{size[1]} has no {self.source.backend} package yet; "
                          f"compiling it once (40-60 s on an H100; cached for later runs; {prebuild})")
            engine = self.source.engine(size)
        else:
            self.announce(f"rect letterbox: input {size[0]}x{size[1]} has no {self.source.backend} package and this "
                          f"run has compiled its share; it runs uncompiled (same detections, slower; {prebuild})")
            self.fell_back.add(size)
            engine = self.source.fallback(size)
        engine.activate()
        if engine.backend != self.source.backend:  # e.g. inductor fell back to eager torch (it warned why)
            self.backend = engine.backend
        self.active[size] = engine
        while len(self.active) > self.keep:
            old, evicted = self.active.popitem(last=False)
            for listener in self.eviction_listeners:
                listener(old)
            evicted.deactivate()
        return engine

    def activate_impl(self) -> None:
        described = self.source.describe()
        self.output_shapes = {name: tuple(described.output_shapes.get(name, ())) for name in described.output_names}
        self.max_batch = described.max_batch
        self.metadata = dict(described.metadata)

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        height, width = (int(d) for d in batch.shape[-2:])
        return self.engine_for((height, width))(batch)

    def deactivate_impl(self) -> None:
        while self.active:
            size, engine = self.active.popitem(last=False)
            for listener in self.eviction_listeners:
                listener(size)
            engine.deactivate()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wants_buckets(spec: Any, model_file: Any) -> bool:
    """Whether ``model_file`` runs under the rect letterbox on a fixed-size engine, one per bucket:
    ``spec`` asks for ``rect`` and the file is an ONNX whose input height and width are dynamic
    (a file of fixed size runs square at its size, as in Ultralytics)."""
    from trtdet.geometry import LETTERBOX_ALIASES
    from trtdet.model_file import onnx_file_description

    letterbox = LETTERBOX_ALIASES.get(spec.letterbox, spec.letterbox)
    if letterbox != "rect" or model_file.kind != "onnx":
        return False
    _metadata, shape = onnx_file_description(model_file.path)
    return len(shape) == 4 and not isinstance(shape[2], int) and not isinstance(shape[3], int)
