"""Built-in plugin: the TensorRT engine backend (``--backend tensorrt``), NVIDIA TensorRT or TensorRT-RTX.

Loads trtdet ``.engine`` files (``trtdet.contracts.artifact`` format), and ``.onnx`` files by
building (once, cached in the shared artifact cache) an engine with the options' precision,
build options and a batch of at least 8. An engine built for another TensorRT version or GPU
is rebuilt from its source ONNX, with the build options it records, when the cache still
holds that ONNX; otherwise the error says how to rebuild it. Before deserialising, the
TensorRT plugins of the build steps named in the engine's ``build_options`` are registered.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from trtdet.build_options import steps_of
from trtdet.context import RunContext
from trtdet.contracts.artifact import ArtifactMetadata, read_artifact, read_metadata
from trtdet.contracts.build_steps import option_text
from trtdet.contracts.engine import CACHE_ONLY, BackendDefaults, BuildRequest, Engine, ModelFile
from trtdet.devices import check_present, on_device, visible_gpus
from trtdet.engines.artifact_cache import ArtifactCache
from trtdet.engines.tensorrt.builder import (
    ENGINE_SUFFIX,
    BuildConfig,
    BuildResult,
    build_engine,
    engine_cache,
    register_step_plugins,
)
from trtdet.engines.tensorrt.flavour import INSTALL_HINT, Flavour, available_flavours, flavour_by_name
from trtdet.engines.tensorrt.runtime import TensorRTEngine
from trtdet.errors import ModelError, UsageError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions
from trtdet.spec_adapt import adapt_spec_to_file

ComputeCapability = tuple[int, int]


def gpu_compute_capability() -> ComputeCapability | None:
    """The current CUDA GPU's compute capability through torch, or None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return int(major), int(minor)


def runs_on(flavour: Flavour, capability: ComputeCapability) -> bool:
    supported = flavour.supported_compute_capabilities()
    return supported is None or capability in supported


def _cc_text(capability: ComputeCapability) -> str:
    return f"{capability[0]}.{capability[1]}"


def incompatibility(metadata: ArtifactMetadata, flavour: Flavour, capability: ComputeCapability) -> str | None:
    """Why an engine cannot run with ``flavour`` on a GPU of ``capability`` (None: it can)."""
    built = f"{'TensorRT-RTX' if metadata.runtime == 'rtx' else 'TensorRT'} {metadata.runtime_version}"
    if metadata.runtime != flavour.name or metadata.runtime_version != flavour.version:
        return f"it was built with {built}, this is {flavour.label}"
    if metadata.compute_capability == "aot":
        if not runs_on(flavour, capability):
            return f"{flavour.label} does not support compute capability {_cc_text(capability)}"
        return None
    if metadata.compute_capability != _cc_text(capability):
        return f"it was built for compute capability {metadata.compute_capability}, this GPU is {_cc_text(capability)}"
    return None


def choose_runtime_flavour(metadata: ArtifactMetadata | None, capability: ComputeCapability) -> Flavour:
    """The installed TensorRT to run with: the engine's own if it runs here, else the best that does."""
    if metadata is not None:
        own = flavour_by_name(metadata.runtime)
        if own is not None and runs_on(own, capability):
            return own
    usable = [f for f in available_flavours() if runs_on(f, capability)]
    if not usable:
        raise ModelError(
            f"no installed TensorRT runs on compute capability {_cc_text(capability)}: {INSTALL_HINT}"
        )
    return usable[0]


def ensure_runnable(
    path: Path,
    spec: ModelSpec,
    flavour: Flavour,
    capability: ComputeCapability,
    cache: ArtifactCache | None = None,
) -> tuple[Path, ArtifactMetadata, bytes]:
    """The engine at ``path`` if it fits this TensorRT and GPU, else one rebuilt from its cached ONNX.

    Raises ``ModelError`` naming the file when it is malformed, or mismatched and its source
    ONNX is no longer in the cache.
    """
    metadata, plan = read_artifact(path)
    reason = incompatibility(metadata, flavour, capability)
    if reason is None:
        return path, metadata, plan
    cache = cache or engine_cache()
    source = cache.cached_source(metadata.source_sha256)
    if source is None:
        options = "".join(f" {option_text(name, value)}" for name, value in metadata.build_options.items())
        raise ModelError(
            f"{path}: {reason}, and its source ONNX (sha256 {metadata.source_sha256[:12]}) is not in the engine "
            f"cache; rebuild it: trtdet build MODEL.onnx --model {metadata.model} --precision {metadata.precision} "
            f"--batch {metadata.max_batch}{options}"
        )
    warnings.warn(f"{path}: {reason}; rebuilding from the cached source ONNX", stacklevel=2)
    # Rebuild the engine this file holds: the spec as the file describes it (its input size
    # and names), not the one the caller started from.
    if metadata.dynamic_input_size:  # any H x W up to input_size: what the rect letterbox builds
        spec = adapt_spec_to_file(dataclasses.replace(spec, letterbox="rect"), metadata.as_strings(), (None,) * 4)
    else:
        spec = adapt_spec_to_file(spec, metadata.as_strings(), (None, None, *metadata.input_size))
    config = BuildConfig(
        precision=metadata.precision,
        max_batch=metadata.max_batch,
        build_options=metadata.build_options,
        trt=flavour.name,
    )
    result = build_engine(source, spec, config, cache=cache)
    rebuilt, plan = read_artifact(result.path)
    return result.path, rebuilt, plan


def check_plugins(path: Path, metadata: ArtifactMetadata, flavour: Flavour) -> None:
    """Register the TensorRT plugins of the engine's build steps, then fail clearly if one is missing."""
    try:
        planned = steps_of(metadata.build_options)
    except UsageError as exc:
        raise ModelError(f"{path}: {exc}") from exc
    register_step_plugins(planned, flavour)
    registry = flavour.module.get_plugin_registry()
    for plugin in metadata.plugins:
        if registry.get_creator(plugin.name, plugin.version, plugin.namespace) is None:
            raise ModelError(
                f"{path}: needs the TensorRT plugin {plugin.name!r} (version {plugin.version}, namespace "
                f"{plugin.namespace!r}) from the Python package {plugin.package!r}, which is not installed "
                f"or did not register it (pip install {plugin.package})"
            )


class TensorRTBackend(BackendDefaults):
    """Runs trtdet engines (and ONNX, built once into the engine cache) with TensorRT on CUDA."""

    name = "tensorrt"
    priority = 50
    file_kinds = ("engine", "onnx")
    artifact_suffix = ENGINE_SUFFIX
    #: GPUs only: ``--device auto`` builds for the GPU (TensorRT-RTX builds without one).
    device_kinds = ("cuda",)

    #: ONNX files are built on first use (then cached) for batches up to at least this.
    min_build_batch = 8

    def unavailable_reason(self, device: str) -> str | None:
        if device != "cuda":
            return "TensorRT runs on CUDA GPUs only (use --device cuda)"
        flavours = available_flavours()
        if not flavours:
            return f"no TensorRT is installed ({INSTALL_HINT})"
        capability = gpu_compute_capability()
        if capability is None:
            return "no CUDA GPU is visible to torch (TensorRT buffers are torch CUDA tensors)"
        if not any(runs_on(f, capability) for f in flavours):
            labels = ", ".join(f.label for f in flavours)
            return (
                f"{labels} does not support this GPU's compute capability {_cc_text(capability)}; "
                "install NVIDIA TensorRT (pip install 'trtdet[tensorrt]')"
            )
        return None

    def build(
        self, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY
    ) -> BuildResult:
        """An engine for ``context.device``'s GPU (TensorRT-RTX: portable) from an ONNX file, cached."""
        device = context.device
        if source.kind != "onnx":
            raise UsageError("--weights builds need --backend inductor; for TensorRT export to ONNX first (trtdet export)")
        if not device.is_cuda:
            raise UsageError("--device cpu: TensorRT engines are built on a GPU (cpu packages: --backend inductor)")
        if device.index is not None or visible_gpus() > 0:
            # a GPU named by index must be there; plain ``cuda`` builds without one, as TensorRT-RTX
            # builds portable engines on any machine (CI builds both models that way)
            check_present(device)
        config = BuildConfig(
            precision=context.precision,
            max_batch=context.batch,
            build_options=context.build_options,
            trt=request.runtime,
        )
        with on_device(device):
            return build_engine(
                source.path, spec, config, output=request.output, use_cache=request.use_cache, report=request.report
            )

    def load(
        self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext | None = None
    ) -> Engine:
        path = Path(model_file.path)
        capability = gpu_compute_capability()
        if capability is None:
            raise ModelError(f"{path}: TensorRT needs a CUDA GPU and none is visible")
        if model_file.kind == "onnx":
            context = RunContext.from_options(options, context)
            built = context.replace(batch=max(self.min_build_batch, context.batch))
            runtime = choose_runtime_flavour(None, capability).name
            path = self.build(model_file, spec, built, BuildRequest(runtime=runtime)).path
        flavour = choose_runtime_flavour(read_metadata(path), capability)
        path, metadata, plan = ensure_runnable(path, spec, flavour, capability)
        check_plugins(path, metadata, flavour)
        return TensorRTEngine(path, metadata, plan, flavour, cuda_graph=bool(options.cuda_graphs))


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(TensorRTBackend())
