"""Built-in plugin: the ``inductor`` engine backend, compiled GPU engines without TensorRT.

Checkpoints and ONNX files are compiled once into AOTInductor packages (``trtdet.engines.
inductor.build``) held in the artifact cache; ``.pt2`` packages from ``trtdet build --backend
inductor`` load directly. A package built by another torch, for another GPU or device is
rebuilt from its cached source, or refused with one line saying how to rebuild it. A network
``torch.export`` cannot trace runs on the eager torch backend instead, with a warning saying why.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from trtdet.context import RunContext
from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.build_steps import version_tuple
from trtdet.contracts.engine import (
    CACHE_ONLY,
    BackendDefaults,
    BuildRequest,
    Engine,
    ModelFile,
    existing_file,
)
from trtdet.devices import Device, as_device, check_present, on_device
from trtdet.engines.artifact_cache import copy_atomically
from trtdet.engines.buckets import Description, describe_onnx
from trtdet.errors import ModelError, UsageError
from trtdet.hookspecs import hookimpl
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions

from .build import (
    DEFAULT_MAX_BATCH,
    PACKAGE_SUFFIX,
    RUNTIME,
    ExportError,
    PackageBuild,
    Report,
    build_package,
    device_identity,
    package_cache,
    package_is_cached,
    require_writable,
    runtime_version,
)
from .package import read_package_metadata
from .runtime import InductorEngine

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def incompatibility(metadata: ArtifactMetadata, device: str | Device) -> str | None:
    """Why a package cannot run here on ``device`` (None: it can).

    A package records the device *kind* it was compiled for; any GPU of the same model and
    compute capability runs a CUDA package (``cuda:1`` loads one compiled on ``cuda:0``).
    """
    if metadata.runtime != RUNTIME:
        return f"it is a {metadata.runtime} artifact, not an AOTInductor package"
    device = as_device(device)
    built_for = metadata.extra.get("device", "cpu")
    if built_for != device.kind:
        return f"it was compiled for {built_for}, not {device}"
    if metadata.runtime_version != runtime_version():
        return f"it was compiled by torch {metadata.runtime_version}, this is torch {runtime_version()}"
    capability, gpu_name = device_identity(device)
    if (metadata.compute_capability, metadata.gpu_name) != (capability, gpu_name):
        return (
            f"it was compiled for {metadata.gpu_name} (compute capability {metadata.compute_capability}), "
            f"this is {gpu_name} ({capability})"
        )
    return None


def runnable_package(path: Path, spec: ModelSpec, context: RunContext, report: Report) -> tuple[Path, ArtifactMetadata]:
    """The package at ``path`` if it runs on ``context.device``, else one rebuilt from its cached source."""
    metadata = read_package_metadata(path)
    if metadata.model != spec.name:
        raise ModelError(f"{path}: the package is a {metadata.model!r} model, not {spec.name!r}")
    reason = incompatibility(metadata, context.device)
    if reason is None:
        return path, metadata
    cache = package_cache()
    kind = str(metadata.extra.get("source_kind", "onnx"))
    suffix = Path(str(metadata.extra.get("source_name", "model.onnx"))).suffix or ".onnx"
    source = cache.cached_source(metadata.source_sha256, suffix)
    if source is None:
        flag = "--weights" if kind == "weights" else "--onnx"
        raise ModelError(
            f"{path}: {reason}, and its source (sha256 {metadata.source_sha256[:12]}) is not in the cache; rebuild it: "
            f"trtdet build --backend inductor {flag} SOURCE --model {metadata.model} --precision {metadata.precision}"
        )
    warnings.warn(f"{path}: {reason}; rebuilding from the cached source", stacklevel=2)
    rebuilt = context.replace(precision=metadata.precision, batch=metadata.max_batch)
    result = build_package(ModelFile(source, kind), spec, rebuilt, report=report)
    return result.path, result.metadata


class InductorBackend(BackendDefaults):
    """Compiles networks ahead of time with AOTInductor and runs the packages (CUDA graphs optional)."""

    name = "inductor"
    #: Above eager torch and ONNX Runtime on CUDA, below TensorRT.
    priority = 30
    file_kinds = ("package", "onnx", "weights")
    artifact_suffix = PACKAGE_SUFFIX

    def __init__(self, report: Report | None = None) -> None:
        self.report = report or _say

    def auto_priority(self, device: str) -> int:
        """On the CPU, ``auto`` prefers ONNX Runtime and eager torch (no compile wait)."""
        return self.priority if device == "cuda" else 0

    def unavailable_reason(self, device: str) -> str | None:
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed (pip install torch)"
        if version_tuple(torch.__version__) < MIN_TORCH:
            return f"AOTInductor packages need torch >= {'.'.join(map(str, MIN_TORCH))}, this is {torch.__version__}"
        if device == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA GPU"
        return None

    def build(
        self, source: ModelFile, spec: ModelSpec, context: RunContext, request: BuildRequest = CACHE_ONLY
    ) -> PackageBuild:
        """A package for ``context.device`` (a GPU, or ``cpu``) from a checkpoint or ONNX file, cached."""
        device = context.device
        if device.is_cuda:
            if not torch.cuda.is_available():
                raise UsageError(f"--device {device}: PyTorch sees no CUDA GPU (use --device cpu for a CPU package)")
            check_present(device)
        model_file = ModelFile(existing_file(source.path), source.kind)
        with on_device(device):
            result = build_package(model_file, spec, context, report=request.report, use_cache=request.use_cache)
        if request.output is None:
            return result
        return dataclasses.replace(result, path=copy_atomically(result.path, request.output))

    def load(
        self, model_file: ModelFile, spec: ModelSpec, options: DetectorOptions, context: RunContext | None = None
    ) -> Engine:
        path = Path(model_file.path)
        context = RunContext.from_options(options, context)
        if model_file.kind == "package":
            path, metadata = runnable_package(path, spec, context, self.report)
        elif model_file.kind in ("onnx", "weights"):
            from trtdet.engines.buckets import BucketEngine, wants_buckets

            if wants_buckets(spec, model_file):  # rect: a package per input shape bucket
                return BucketEngine(InductorBuckets(self, model_file, spec, context), spec.input_size, options.device)
            return self.compiled_engine(model_file, spec, context)
        else:
            raise ModelError(f"{path}: the inductor backend loads packages, ONNX or checkpoints, not {model_file.kind} files")
        return InductorEngine(path, metadata, cuda_graphs=graphs_wanted(options), device=context.device)

    def compiled_engine(self, model_file: ModelFile, spec: ModelSpec, context: RunContext) -> Engine:
        """The package of ``model_file`` at ``spec.input_size`` (built or from the cache), or eager
        torch with a warning when the network cannot be exported or compiled."""
        try:
            result = build_package(model_file, spec, context, report=self.report)
        except ExportError as exc:
            from trtdet.engines.torch_backend import TorchBackend

            said = str(exc) if str(exc).startswith(str(model_file.path)) else f"{model_file.path}: {exc}"
            warnings.warn(f"{said}; running the eager torch backend instead", stacklevel=2)
            return TorchBackend().fixed_engine(model_file, spec, context.options)
        return InductorEngine(result.path, result.metadata, cuda_graphs=graphs_wanted(context.options), device=context.device)


class InductorBuckets:
    """``BucketSource`` of the inductor backend: a package per input size, from the package cache
    (keyed by the file's sha256, precision, largest batch and input H x W) or compiled."""

    backend = "inductor"

    def __init__(self, backend: InductorBackend, model_file: ModelFile, spec: ModelSpec, context: RunContext) -> None:
        self.inductor, self.model_file, self.spec, self.context = backend, model_file, spec, context
        #: The packages replay CUDA graphs (as one package would): whole-pipeline graphs may record them.
        self.cuda_graphs = graphs_wanted(context.options) and context.is_cuda

    def _spec(self, size: tuple[int, int]) -> ModelSpec:
        return dataclasses.replace(self.spec, input_size=size)

    def engine(self, size: tuple[int, int]) -> Engine:
        return self.inductor.compiled_engine(self.model_file, self._spec(size), self.context)

    def is_built(self, size: tuple[int, int]) -> bool:
        return package_is_cached(self.model_file, self._spec(size), self.context)

    def fallback(self, size: tuple[int, int]) -> Engine:
        from trtdet.engines.torch_backend import TorchBackend

        return TorchBackend().fixed_engine(self.model_file, self._spec(size), self.context.options)

    def describe(self) -> Description:
        # an unusable cache is one line at load, as for a single package, not at the first batch;
        # a read-only one is fine when the full-size package is there (a prebuilt deployment)
        cache = package_cache()
        if not self.is_built(tuple(self.spec.input_size)):
            require_writable(cache.root)
        return describe_onnx(self.model_file.path, max(self.context.batch, DEFAULT_MAX_BATCH))


#: ``aoti_load_package(..., run_single_threaded=True)`` (capturable in CUDA graphs) came with 2.7.
MIN_TORCH = (2, 7)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@hookimpl
def trtdet_engine_backends(register) -> None:
    register(InductorBackend())


def graphs_wanted(options: DetectorOptions) -> bool:
    """CUDA graphs unless ``cuda_graphs=False``: replaying a captured package is faster at small
    batches and passed the batching stress test (``benchmarks/results/design_h200.md``)."""
    return True if options.cuda_graphs is None else bool(options.cuda_graphs)
