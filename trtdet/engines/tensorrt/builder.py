"""ONNX -> TensorRT engine, as a chain of small steps ending in the artifact cache.

``build_engine``: load the ONNX -> fix its input size -> plan the plugins' build steps (e.g.
CenterNet's deformable-convolution lowering, ``trtdet.contracts.build_steps``) -> cache lookup -> apply the steps
-> precision -> parse -> build -> store in the cache (``trtdet.engines.artifact_cache``).

FP16 is done by converting the ONNX to float16 (I/O kept float32) before parsing, never by
builder flags: TensorRT >= 11 and TensorRT-RTX are strongly typed and have no such flags.
The core never names a model plugin: model-specific rewrites and TensorRT plugin creators
come from the steps plugins register through ``trtdet_build_steps``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtdet.build_options import plan_steps
from trtdet.class_names import parse_class_names
from trtdet.contracts.artifact import ArtifactMetadata, RequiredPlugin, TensorInfo, read_metadata
from trtdet.contracts.build_steps import PlannedStep, chosen_options
from trtdet.engines.artifact_cache import ArtifactCache, copy_atomically, file_sha256
from trtdet.engines.tensorrt.flavour import Flavour, load_flavour
from trtdet.engines.tensorrt.trt_objects import dtype_name, make_logger, make_progress_monitor
from trtdet.errors import ModelError, UsageError
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.version import __version__

if TYPE_CHECKING:
    import onnxruntime.transformers.float16 as float16
    import torch
else:
    torch = lazy_import("torch")
    float16 = lazy_import("onnxruntime.transformers.float16")

if TYPE_CHECKING:  # onnx is imported by the functions that build, not by loading the backend plugin
    import onnx

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

PRECISIONS = ("fp32", "fp16")
#: File suffix of TensorRT engines in the artifact cache.
ENGINE_SUFFIX = ".engine"

Report = Callable[[str], None]


@dataclass(frozen=True)
class BuildConfig:
    """How to build: precision, batch range, plugins' build options, which TensorRT (``None``: auto)."""

    precision: str = "fp32"
    max_batch: int = 1
    opt_batch: int | None = None
    build_options: Mapping[str, str] = field(default_factory=dict, hash=False)
    trt: str | None = None
    workspace_mib: int | None = None


@dataclass(frozen=True)
class BuildResult:
    """A built (or cached) engine file and its metadata."""

    path: Path
    metadata: ArtifactMetadata
    cached: bool
    seconds: float

    def describe(self) -> str:
        """How the engine came to be and what it holds: runtime, precision, batch range, GPU, build options."""
        meta = self.metadata
        how = "from the engine cache" if self.cached else f"built in {self.seconds:.1f} s"
        flavour = "TensorRT-RTX" if meta.runtime == "rtx" else "TensorRT"
        notes = "".join(f", {name} {value}" for name, value in meta.build_options.items())
        return (
            f"{how}; {flavour} {meta.runtime_version}, {meta.precision}, "
            f"batch 1..{meta.max_batch}, compute capability {meta.compute_capability}{notes}"
        )


def engine_cache(root: Path | None = None) -> ArtifactCache:
    """The artifact cache holding TensorRT engines (``root``: the default cache dir)."""
    return ArtifactCache(root, suffix=ENGINE_SUFFIX)


def current_compute_capability(flavour: Flavour) -> str:
    """``"aot"`` for TensorRT-RTX (portable ahead-of-time plans); else the GPU's, e.g. ``"9.0"``."""
    if flavour.is_rtx:
        return "aot"
    try:
        import torch
    except ImportError as exc:
        raise UsageError(f"{flavour.label} builds for the visible GPU; torch is needed to query it") from exc
    if not torch.cuda.is_available():
        raise UsageError(f"{flavour.label} builds engines for a GPU and no CUDA GPU is visible")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def current_gpu_name(flavour: Flavour) -> str:
    """``""`` for TensorRT-RTX's portable plans; else the visible GPU's name."""
    if flavour.is_rtx:
        return ""
    return str(torch.cuda.get_device_name())


def class_names_of(model: onnx.ModelProto, spec: ModelSpec) -> tuple[str, ...]:
    """The ONNX file's own ``names`` metadata (unless the spec keeps its own), else the spec's."""
    if not spec.names_from_model:
        return spec.class_names
    for prop in model.metadata_props:
        if prop.key == "names":
            names = parse_class_names(prop.value)
            if names:
                return names
    return spec.class_names


def _image_input(model: onnx.ModelProto, source: str) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{source}: expected 1 image input, got {len(inputs)}: {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelError(
            f"{source}: image input {inputs[0].name!r} must be [B, C, H, W], has {len(dims)} dims"
        )
    return inputs[0]


@dataclass(frozen=True)
class InputGeometry:
    """The image input an engine is built for: its size (the largest under a dynamic H x W), the
    ONNX's static batch (None: dynamic) and whether H and W stay dynamic."""

    size: tuple[int, int]
    static_batch: int | None
    dynamic_size: bool = False


def keeps_dynamic_size(spec: ModelSpec) -> bool:
    """Whether a model with a dynamic H and W keeps them dynamic in its engine: under the rect letterbox,
    whose batches have each shape's stride-padded size (384x640 for 16:9 frames at 640), as
    Ultralytics' predictor does for a model that accepts any size."""
    return spec.letterbox == "rect"


def fix_spatial_size(model: onnx.ModelProto, spec: ModelSpec, source: str) -> InputGeometry:
    """Make the image input's H and W static (the spec's size where dynamic), in place, unless both are
    dynamic and the spec's letterbox wants them so (``keeps_dynamic_size``).

    Static spatial dims let TensorRT infer static output shapes, which the engine metadata records;
    a dynamic H x W gets an optimisation profile up to the spec's size instead (``profile_shapes``).
    """
    dims = _image_input(model, source).type.tensor_type.shape.dim
    batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    static = [dims[i].HasField("dim_value") and dims[i].dim_value > 0 for i in (2, 3)]
    if not any(static) and keeps_dynamic_size(spec):
        return InputGeometry((int(spec.input_size[0]), int(spec.input_size[1])), batch, dynamic_size=True)
    size = []
    for index, default in ((2, spec.input_size[0]), (3, spec.input_size[1])):
        if dims[index].HasField("dim_value") and dims[index].dim_value > 0:
            size.append(int(dims[index].dim_value))
        else:
            dims[index].dim_value = int(default)
            size.append(int(default))
    return InputGeometry((size[0], size[1]), batch)


def profile_shapes(
    shape: tuple[int, ...], max_batch: int, opt_batch: int, size: tuple[int, int] | None, multiple: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """The (min, opt, max) input shapes of the optimisation profile, None when the input is static.

    ``shape`` is the parsed network's input (-1: dynamic); ``size`` the largest H x W when they are
    dynamic, tuned for (rect batches of a 16:9 stream are smaller, but every size up to it runs),
    from ``multiple`` x ``multiple`` (the smallest stride-padded rect size).
    """
    channels = shape[1]
    batch_dynamic = shape[0] < 0
    if not batch_dynamic and size is None:
        return None
    low_batch, opt, high_batch = (1, opt_batch, max_batch) if batch_dynamic else (shape[0],) * 3
    if size is None:
        spatial_low = spatial_high = tuple(shape[2:])
    else:
        spatial_low, spatial_high = (min(multiple, size[0]), min(multiple, size[1])), size
    return (low_batch, channels, *spatial_low), (opt, channels, *spatial_high), (high_batch, channels, *spatial_high)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with float32 weights and compute converted to float16, I/O kept float32."""
    return float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


def timing_cache_path(cache: ArtifactCache, flavour: Flavour) -> Path:
    """Where a full TensorRT keeps its timing cache (TensorRT-RTX has none)."""
    return cache.root / "timing" / f"{flavour.name}-{flavour.version}.cache"


def check_config(config: BuildConfig) -> None:
    if config.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {config.precision!r} (choose from: {', '.join(PRECISIONS)})")
    if config.max_batch < 1:
        raise UsageError(f"--batch must be >= 1, got {config.max_batch}")


def load_onnx(onnx_path: Path) -> tuple[onnx.ModelProto, str]:
    """The ONNX model and the sha256 of its file."""
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX file not found")

    sha256 = file_sha256(onnx_path)
    try:
        return onnx.load(str(onnx_path)), sha256
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for broken files
        raise ModelError(f"{onnx_path}: not a readable ONNX model: {exc}") from exc


def batch_range(static_batch: int | None, config: BuildConfig, say: Report) -> int:
    """The largest batch to build for: the ONNX's static batch, else the configured one."""
    if static_batch and static_batch != config.max_batch:
        say(f"the ONNX has a static batch of {static_batch}: building for batch {static_batch}")
    return static_batch or config.max_batch


def describe(
    model: onnx.ModelProto,
    spec: ModelSpec,
    config: BuildConfig,
    flavour: Flavour,
    sha256: str,
    shape: tuple[InputGeometry, int],
    build_options: dict[str, str],
) -> ArtifactMetadata:
    """The engine's metadata as far as the cache key goes (``shape``: input geometry, max batch)."""
    geometry, max_batch = shape
    return ArtifactMetadata(
        model=spec.name,
        names=class_names_of(model, spec),
        input_size=geometry.size,
        dynamic_input_size=geometry.dynamic_size,
        precision=config.precision,
        runtime=flavour.name,
        runtime_version=flavour.version,
        compute_capability=current_compute_capability(flavour),
        gpu_name=current_gpu_name(flavour),
        source_sha256=sha256,
        max_batch=max_batch,
        trtdet_version=__version__,
        build_options=build_options,
    )


def register_step_plugins(planned: tuple[PlannedStep, ...], flavour: Flavour, logger: Any = None) -> dict[str, RequiredPlugin]:
    """Register the TensorRT plugins the steps' choices need; the creators offered, by name."""
    runtime = flavour.runtime_info()
    offered: dict[str, RequiredPlugin] = {}
    library = False
    for planned_step in planned:
        needs = planned_step.step.prepare(planned_step.choice, runtime)
        library = library or needs.plugin_library
        for name, version, namespace in needs.creators:
            offered[name] = RequiredPlugin(name, str(version), str(namespace), planned_step.registered.distribution)
    if library:  # TensorRT's own plugins live in libnvinfer_plugin
        flavour.module.init_libnvinfer_plugins(logger or make_logger(flavour.module), "")
    return offered


def apply_steps(model: onnx.ModelProto, spec: ModelSpec, planned: tuple[PlannedStep, ...]) -> onnx.ModelProto:
    """The ONNX after every planned step's rewrite, in registration order."""
    for planned_step in planned:
        model = planned_step.step.rewrite(model, spec, planned_step.choice)
    return model


def apply_precision(model: onnx.ModelProto, precision: str, say: Report) -> onnx.ModelProto:
    if precision == "fp16":
        say("converting the ONNX to float16 (strongly typed build)")
        return to_fp16(model)
    return model


def _parse_error(parser: Any, source: str, flavour: Flavour, planned: tuple[PlannedStep, ...]) -> ModelError:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    if not errors:
        return ModelError(f"{source}: {flavour.label} cannot parse it")
    error = errors[0]
    op, node_name = error.node_operator(), error.node_name()
    detail = error.desc().strip().splitlines()[0] if error.desc().strip() else str(error.code())
    message = f"{source}: {flavour.label} cannot import node {node_name!r} (op {op}): {detail}"
    runtime = flavour.runtime_info()
    hints = [hint for p in planned if (hint := p.step.parse_hint(op, p.choice, runtime))]
    if hints:
        return ModelError(f"{message}; {'; '.join(hints)}")
    return ModelError(
        f"{message}; no installed plugin's build step (hook trtdet_build_steps) rewrites op {op} for this model"
    )


@dataclass
class Network:
    """A parsed TensorRT network with the objects that must outlive the build."""

    flavour: Flavour
    logger: Any
    builder: Any
    network: Any
    parser: Any


def parse_network(model: onnx.ModelProto, source: Path, flavour: Flavour, planned: tuple[PlannedStep, ...], say: Report) -> Network:
    """A strongly typed network parsed from ``model``, after the steps' TensorRT plugins are registered."""
    trt = flavour.module
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0 if flavour.always_strongly_typed else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {source.name} with {flavour.label}")
    if not parser.parse(model.SerializeToString()):
        raise _parse_error(parser, str(source), flavour, planned)
    return Network(flavour, logger, builder, network, parser)


def configure(parsed: Network, config: BuildConfig, max_batch: int, source: Path, geometry: InputGeometry | None = None,
              multiple: int = 32) -> Any:
    """The builder config: workspace limit and the optimisation profile of a dynamic batch and/or H x W."""
    builder, network = parsed.builder, parsed.network
    trt_config = builder.create_builder_config()
    if config.workspace_mib:
        trt_config.set_memory_pool_limit(parsed.flavour.module.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    image = network.get_input(0)
    shape = tuple(int(d) for d in image.shape)
    dynamic_size = geometry.size if geometry is not None and geometry.dynamic_size else None
    if shape[1] < 0 or (dynamic_size is None and any(d < 0 for d in shape[2:])):
        raise ModelError(f"{source}: input {image.name!r} has dynamic non-batch dims {shape} after fixing H, W")
    opt = min(max(config.opt_batch or max_batch, 1), max_batch)
    shapes = profile_shapes(shape, max_batch, opt, dynamic_size, multiple)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(image.name, *shapes)
        trt_config.add_optimization_profile(profile)
    return trt_config


def serialize(parsed: Network, trt_config: Any, cache: ArtifactCache, source: Path, say: Report) -> bytes:
    """Build the plan, reading and updating the timing cache of a full TensorRT."""
    flavour = parsed.flavour
    trt = flavour.module
    timing_path = None
    if not flavour.is_rtx:  # TensorRT-RTX has no timing cache (its calls are no-ops)
        timing_path = timing_cache_path(cache, flavour)
        data = timing_path.read_bytes() if timing_path.is_file() else b""
        trt_config.set_timing_cache(trt_config.create_timing_cache(data), False)
    trt_config.progress_monitor = make_progress_monitor(trt, say)
    plan = parsed.builder.build_serialized_network(parsed.network, trt_config)
    if plan is None:
        raise ModelError(f"{source}: {flavour.label} engine build failed: {parsed.logger.last_error()}")
    if timing_path is not None:
        timing_path.parent.mkdir(parents=True, exist_ok=True)
        timing_path.write_bytes(bytes(trt_config.get_timing_cache().serialize()))
    return bytes(plan)


def _tensor_infos(trt: Any, tensors: list[Any]) -> tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(t.name, tuple(int(d) for d in t.shape), dtype_name(trt, t.dtype)) for t in tensors
    )


def completed(metadata: ArtifactMetadata, parsed: Network, plugins: tuple[RequiredPlugin, ...], plan: bytes, source: Path) -> ArtifactMetadata:
    """The full metadata of a built engine: I/O tensors, required plugins, payload size."""
    trt, network = parsed.flavour.module, parsed.network
    return replace(
        metadata,
        inputs=_tensor_infos(trt, [network.get_input(i) for i in range(network.num_inputs)]),
        outputs=_tensor_infos(trt, [network.get_output(i) for i in range(network.num_outputs)]),
        plugins=plugins,
        extra={"payload_bytes": len(plan), "source_onnx": source.name},
    )


class DynamicSizeFailed(ModelError):
    """TensorRT could not build the network with a dynamic height and width (a fixed size may still build)."""


def build_engine(
    onnx_path: Path | str,
    spec: ModelSpec,
    config: BuildConfig = BuildConfig(),
    *,
    output: Path | str | None = None,
    cache: ArtifactCache | None = None,
    use_cache: bool = True,
    report: Report | None = None,
) -> BuildResult:
    """Build (or fetch from the cache) the engine of ``onnx_path`` for ``spec``.

    The engine lands in the cache and, when ``output`` is given, is copied there too.
    ``report`` receives one-line progress messages (build phases of long builds). Where TensorRT
    cannot build a rect (dynamic H x W) engine, a fixed-size one is built instead, with one line
    saying so: TensorRT-RTX 1.7 fails that way on fp16 YOLO11n (its shape inference of ``Resize``).
    """
    started = time.perf_counter()
    say: Report = report or (lambda _message: None)
    source = Path(onnx_path)
    if not source.is_file():
        raise ModelError(f"{source}: ONNX file not found")
    check_config(config)
    flavour = load_flavour(config.trt)
    cache = cache or engine_cache()
    job = _BuildJob(source, config, flavour, cache, say, output, use_cache, started)
    try:
        return job.run(spec)
    except DynamicSizeFailed as exc:
        size = f"{spec.input_size[0]}x{spec.input_size[1]}"
        message = (f"{source}: {flavour.label} cannot build this {config.precision} network with a dynamic height and "
                   f"width ({exc}); building a fixed {size} engine, which runs the square letterbox "
                   "(--precision fp32 or --backend inductor run rect)")
        say(message)
        warnings.warn(message, stacklevel=2)
        return job.run(replace(spec, letterbox="square"))


@dataclass
class _BuildJob:
    """One ``build_engine`` call's fixed parts; ``run`` builds (or fetches) the engine for a spec."""

    source: Path
    config: BuildConfig
    flavour: Flavour
    cache: ArtifactCache
    say: Report
    output: Path | str | None
    use_cache: bool
    started: float

    def run(self, spec: ModelSpec) -> BuildResult:
        source, config, flavour, cache, say = self.source, self.config, self.flavour, self.cache, self.say
        model, sha256 = load_onnx(source)
        geometry = fix_spatial_size(model, spec, str(source))
        max_batch = batch_range(geometry.static_batch, config, say)
        planned = plan_steps(model, spec, config.build_options, flavour.runtime_info())
        metadata = describe(model, spec, config, flavour, sha256, (geometry, max_batch), chosen_options(planned))
        if self.use_cache and (hit := cache.lookup(metadata.key())) is not None:
            say(f"engine cache hit: {hit}")
            return BuildResult(_deliver(hit, self.output), read_metadata(hit), True, time.perf_counter() - self.started)

        model = apply_precision(apply_steps(model, spec, planned), config.precision, say)
        offered = register_step_plugins(planned, flavour)
        used_ops = {node.op_type for node in model.graph.node}
        plugins = tuple(plugin for name, plugin in offered.items() if name in used_ops)
        parsed = parse_network(model, source, flavour, planned, say)
        trt_config = configure(parsed, config, max_batch, source, geometry, spec.input_multiple or spec.stride or 32)
        sizes = f", input up to {geometry.size[0]}x{geometry.size[1]} (rect)" if geometry.dynamic_size else ""
        say(f"building {config.precision} engine, batch 1..{max_batch}{sizes} (this can take minutes)")
        try:
            plan = serialize(parsed, trt_config, cache, source, say)
        except ModelError as exc:
            if geometry.dynamic_size:
                raise DynamicSizeFailed(parsed.logger.last_error()) from exc
            raise
        metadata = completed(metadata, parsed, plugins, plan, source)
        cache.keep_source(source, sha256)
        stored = cache.store(metadata, plan)
        seconds = time.perf_counter() - self.started
        say(f"engine built in {seconds:.1f} s: {len(plan) / 1e6:.1f} MB")
        return BuildResult(_deliver(stored, self.output), metadata, False, seconds)


def _deliver(cached: Path, output: Path | str | None) -> Path:
    if output is None:
        return cached
    return copy_atomically(cached, Path(output))  # a temp name of its own, then a rename
