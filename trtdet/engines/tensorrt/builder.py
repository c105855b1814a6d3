"""ONNX -> TensorRT engine: strongly typed network, dynamic-batch profile, DCN lowering, cache.

FP16 is done by converting the ONNX to float16 (I/O kept float32) before parsing, never by
builder flags: TensorRT >= 11 and TensorRT-RTX are strongly typed and have no such flags.
Model plugins contribute through two hooks (``trtdet_tensorrt_prepare`` registers TensorRT
plugin creators, ``trtdet_tensorrt_rewrite_onnx`` rewrites e.g. DCN nodes); the core never
names a model plugin.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from trtdet.engines.tensorrt.cache import EngineCache, file_sha256
from trtdet.engines.tensorrt.engine_file import EngineMetadata, RequiredPlugin, TensorInfo, read_metadata
from trtdet.engines.tensorrt.flavour import Flavour, load_flavour
from trtdet.engines.tensorrt.trt_objects import dtype_name, make_logger, make_progress_monitor
from trtdet.errors import ModelError, UsageError
from trtdet.model import ModelSpec

PRECISIONS = ("fp32", "fp16")
DCN_CHOICES = ("auto", "builtin", "plugin", "decomposed")
#: ONNX ops that are deformable convolutions: the standard one and the legacy tutorial plugin.
DCN_OPS = ("DeformConv", "Plugin", "DCNv2")

Report = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """How to build: precision, batch range, DCN lowering, which TensorRT (``None``: auto)."""

    precision: str = "fp32"
    max_batch: int = 1
    opt_batch: int | None = None
    dcn: str = "auto"
    trt: str | None = None
    workspace_mib: int | None = None


@dataclass(frozen=True)
class BuildResult:
    """A built (or cached) engine file and its metadata."""

    path: Path
    metadata: EngineMetadata
    cached: bool
    seconds: float


def resolve_dcn(flavour: Flavour, dcn: str) -> str:
    """The DCN lowering for this TensorRT: ``auto`` picks what works, others are checked."""
    if dcn not in DCN_CHOICES:
        raise UsageError(f"unknown --dcn {dcn!r} (choose from: {', '.join(DCN_CHOICES)})")
    if dcn == "auto":
        if flavour.has_builtin_deform_conv:
            return "builtin"
        return "plugin" if flavour.supports_python_plugins else "decomposed"
    if dcn == "builtin" and not flavour.has_builtin_deform_conv:
        raise UsageError(
            f"--dcn builtin needs TensorRT >= 10.1 (its ModulatedDeformConv2d plugin); {flavour.label} "
            "has no DeformConv importer: use --dcn decomposed"
        )
    if dcn == "plugin" and not flavour.supports_python_plugins:
        raise UsageError(
            f"--dcn plugin needs a TensorRT whose parser accepts Python plugins; {flavour.label} "
            "aborts on them: use --dcn decomposed"
        )
    return dcn


def dcn_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The deformable-convolution nodes of the main graph (DeformConv, legacy DCNv2 / Plugin DCNv2)."""
    found = []
    for node in model.graph.node:
        if node.op_type in ("DeformConv", "DCNv2"):
            found.append(node)
        elif node.op_type == "Plugin":
            names = [a.s.decode("utf-8", "replace") for a in node.attribute if a.name == "name"]
            if names and names[0] == "DCNv2":
                found.append(node)
    return found


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


def class_names_of(model: onnx.ModelProto, spec: ModelSpec) -> tuple[str, ...]:
    """The ONNX file's own ``names`` metadata (unless the spec keeps its own), else the spec's."""
    from trtdet.resolve import parse_class_names

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


def fix_spatial_size(
    model: onnx.ModelProto, spec: ModelSpec, source: str
) -> tuple[tuple[int, int], int | None]:
    """Make the image input's H and W static (the spec's size where dynamic), in place.

    Returns the input size and the static batch (None when the batch is dynamic). Static
    spatial dims let TensorRT infer static output shapes, which the engine metadata records.
    """
    dims = _image_input(model, source).type.tensor_type.shape.dim
    size = []
    for index, default in ((2, spec.input_size[0]), (3, spec.input_size[1])):
        if dims[index].HasField("dim_value") and dims[index].dim_value > 0:
            size.append(int(dims[index].dim_value))
        else:
            dims[index].dim_value = int(default)
            size.append(int(default))
    batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return (size[0], size[1]), batch


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with float32 weights and compute converted to float16, I/O kept float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


def _call_hookimpls(hook: Any, **kwargs: Any) -> list[tuple[str, Any]]:
    """Each implementation's (plugin name, result), so results can be traced to their plugin."""
    results = []
    for impl in reversed(hook.get_hookimpls()):
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        results.append((impl.plugin_name, result))
    return results


def prepare_plugins(spec: ModelSpec, flavour: Flavour) -> dict[str, RequiredPlugin]:
    """Run every ``trtdet_tensorrt_prepare`` hook; the TensorRT plugins offered, by creator name."""
    from trtdet.plugins import list_plugins, load_plugins

    pm = load_plugins()
    distributions = {info.name: info.distribution for info in list_plugins()}
    offered: dict[str, RequiredPlugin] = {}
    for plugin_name, result in _call_hookimpls(
        pm.hook.trtdet_tensorrt_prepare, model=spec, trt=flavour.module, flavour=flavour.name
    ):
        for name, version, namespace in result or ():
            package = distributions.get(plugin_name, plugin_name)
            offered[name] = RequiredPlugin(name, str(version), str(namespace), package)
    return offered


def rewrite_for_tensorrt(
    spec: ModelSpec, model: onnx.ModelProto, flavour: Flavour, dcn: str
) -> onnx.ModelProto:
    """Let a model plugin rewrite the ONNX (DCN lowering) through ``trtdet_tensorrt_rewrite_onnx``."""
    from trtdet.plugins import load_plugins

    pm = load_plugins()
    rewritten = pm.hook.trtdet_tensorrt_rewrite_onnx(
        model=spec, onnx_model=model, flavour=flavour.name, dcn=dcn
    )
    return rewritten if rewritten is not None else model


def _parse_error(parser: Any, source: str, flavour: Flavour, dcn: str | None) -> ModelError:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    if not errors:
        return ModelError(f"{source}: {flavour.label} cannot parse it")
    error = errors[0]
    op, node_name = error.node_operator(), error.node_name()
    detail = error.desc().strip().splitlines()[0] if error.desc().strip() else str(error.code())
    message = f"{source}: {flavour.label} cannot import node {node_name!r} (op {op}): {detail}"
    if op in DCN_OPS or (dcn == "plugin" and op.startswith("Trtdet")):
        working = "decomposed" if not flavour.has_builtin_deform_conv else "builtin or decomposed"
        message += f"; deformable convolution: rebuild with --dcn {working} (this build used --dcn {dcn})"
    return ModelError(message)


def _tensor_infos(trt: Any, tensors: list[Any]) -> tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(t.name, tuple(int(d) for d in t.shape), dtype_name(trt, t.dtype)) for t in tensors
    )


def build_engine(
    onnx_path: Path | str,
    spec: ModelSpec,
    options: BuildOptions = BuildOptions(),
    *,
    output: Path | str | None = None,
    cache: EngineCache | None = None,
    use_cache: bool = True,
    report: Report | None = None,
) -> BuildResult:
    """Build (or fetch from the cache) the engine of ``onnx_path`` for ``spec``.

    The engine lands in the cache and, when ``output`` is given, is copied there too.
    ``report`` receives one-line progress messages (build phases of long builds).
    """
    from trtdet import __version__

    started = time.perf_counter()
    say: Report = report or (lambda _message: None)
    onnx_path = Path(onnx_path)
    source = str(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX file not found")
    if options.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {options.precision!r} (choose from: {', '.join(PRECISIONS)})")
    if options.max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {options.max_batch}")
    flavour = load_flavour(options.trt)
    cache = cache or EngineCache()
    onnx_sha256 = file_sha256(onnx_path)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for broken files
        raise ModelError(f"{onnx_path}: not a readable ONNX model: {exc}") from exc
    input_size, static_batch = fix_spatial_size(model, spec, source)
    max_batch = static_batch or options.max_batch
    if static_batch and static_batch != options.max_batch:
        say(f"the ONNX has a static batch of {static_batch}: building for batch {static_batch}")
    has_dcn = bool(dcn_nodes(model))
    dcn = resolve_dcn(flavour, options.dcn) if has_dcn else None
    metadata = EngineMetadata(
        model=spec.name,
        names=class_names_of(model, spec),
        input_size=input_size,
        precision=options.precision,
        trt_flavour=flavour.name,
        trt_version=flavour.version,
        compute_capability=current_compute_capability(flavour),
        onnx_sha256=onnx_sha256,
        max_batch=max_batch,
        dcn=dcn,
        trtdet_version=__version__,
    )
    if use_cache and (hit := cache.lookup(metadata.key())) is not None:
        say(f"engine cache hit: {hit}")
        result_path = _deliver(hit, output)
        return BuildResult(result_path, read_metadata(hit), True, time.perf_counter() - started)

    offered = prepare_plugins(spec, flavour)
    if has_dcn:
        model = rewrite_for_tensorrt(spec, model, flavour, dcn)
        left = [n for n in dcn_nodes(model) if not (dcn == "builtin" and n.op_type == "DeformConv")]
        if left:
            working = "--dcn decomposed" if flavour.is_rtx else "--dcn builtin (or decomposed)"
            raise ModelError(
                f"{source}: {flavour.label} cannot import node {left[0].name!r} (op {left[0].op_type}): no installed "
                f"trtdet plugin lowers it for --dcn {dcn} (hook trtdet_tensorrt_rewrite_onnx); install or enable "
                f"the model's plugin package; {flavour.label} works with {working}"
            )
    if options.precision == "fp16":
        say("converting the ONNX to float16 (strongly typed build)")
        model = to_fp16(model)
    used_ops = {node.op_type for node in model.graph.node}
    plugins = tuple(plugin for name, plugin in offered.items() if name in used_ops)

    trt = flavour.module
    logger = make_logger(trt)
    if dcn == "builtin":
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0 if flavour.always_strongly_typed else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {onnx_path.name} with {flavour.label}")
    if not parser.parse(model.SerializeToString()):
        raise _parse_error(parser, source, flavour, dcn)

    config = builder.create_builder_config()
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    image = network.get_input(0)
    shape = tuple(int(d) for d in image.shape)
    if any(d < 0 for d in shape[1:]):
        raise ModelError(
            f"{source}: input {image.name!r} has dynamic non-batch dims {shape} after fixing H, W"
        )
    if shape[0] < 0:
        opt = min(max(options.opt_batch or max_batch, 1), max_batch)
        profile.set_shape(image.name, (1, *shape[1:]), (opt, *shape[1:]), (max_batch, *shape[1:]))
        config.add_optimization_profile(profile)
    timing_path = None
    if not flavour.is_rtx:  # TensorRT-RTX has no timing cache (its calls are no-ops)
        timing_path = cache.timing_cache_path(flavour.name, flavour.version)
        data = timing_path.read_bytes() if timing_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)
    config.progress_monitor = make_progress_monitor(trt, say)
    say(f"building {options.precision} engine, batch 1..{max_batch} (this can take minutes)")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"{source}: {flavour.label} engine build failed: {logger.last_error()}")
    if timing_path is not None:
        timing_path.parent.mkdir(parents=True, exist_ok=True)
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    plan_bytes = bytes(plan)
    metadata = replace(
        metadata,
        inputs=_tensor_infos(trt, [network.get_input(i) for i in range(network.num_inputs)]),
        outputs=_tensor_infos(trt, [network.get_output(i) for i in range(network.num_outputs)]),
        plugins=plugins,
        extra={"plan_bytes": len(plan_bytes), "source_onnx": onnx_path.name},
    )
    cache.keep_source(onnx_path, onnx_sha256)
    stored = cache.store(metadata, plan_bytes)
    seconds = time.perf_counter() - started
    say(f"engine built in {seconds:.1f} s: {len(plan_bytes) / 1e6:.1f} MB")
    return BuildResult(_deliver(stored, output), metadata, False, seconds)


def _deliver(cached: Path, output: Path | str | None) -> Path:
    if output is None:
        return cached
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial")
    shutil.copyfile(cached, tmp)
    tmp.replace(output)
    return output
