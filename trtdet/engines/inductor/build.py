"""A network (checkpoint or ONNX) to an AOTInductor package: export -> compile -> describe -> check -> cache.

The network is the one the eager torch backend would run (the model plugin's own module for
a checkpoint, trtdet's ONNX converter for ONNX), prepared the same way (device, precision,
NHWC on CUDA). ``torch.export`` traces it with a dynamic batch dimension, AOTInductor compiles
it ahead of time into a ``.pt2`` package, and trtdet's metadata goes inside the package. Each
new package is loaded once in a fresh process before it enters the cache, so a package that
cannot load (a compiler that breaks shared libraries, say) never becomes a cache entry.
Compiles take tens of seconds; a build with the same key is a cache hit afterwards. A cached
package that fails its archive check (``check_archive``) is removed and rebuilt with one
warning; a cache that cannot be written is one line saying which folder, before any compile.
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtdet.cache import cache_path, file_sha256, unusable_cache
from trtdet.class_names import parse_class_names
from trtdet.context import RunContext
from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.engine import ModelFile
from trtdet.devices import Device, as_device
from trtdet.engines.artifact_cache import ArtifactCache, copy_atomically
from trtdet.engines.torch_backend import TorchBackend
from trtdet.errors import ModelError
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.version import __version__

from .compiler import choose_compiler, start_choosing
from .load_check import FreshProcessCheck
from .package import check_archive, read_package_metadata, write_package_metadata

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

RUNTIME = "inductor"
#: File suffix of AOTInductor packages.
PACKAGE_SUFFIX = ".pt2"
#: Packages are compiled for batches 1..max(this, --batch), so one package serves the usual sizes.
DEFAULT_MAX_BATCH = 32
#: Operator namespaces that torch itself provides (others name the library that registers them).
_TORCH_NAMESPACES = {"aten", "prims", "prim", "higher_order"}

Report = Callable[[str], None]


class ExportError(ModelError):
    """The network cannot be exported (the caller may fall back to eager execution)."""


class CompileError(ExportError):
    """AOTInductor cannot compile the exported network (the caller may fall back to eager execution, as for
    an export failure). On an H100 with torch 2.11 the YOLO26/YOLOv10 end-to-end heads failed this way
    until ``compile_settings`` turned off compile-time autotuning on synthetic inputs for networks that
    index with data (``indexes_with_data``)."""


@dataclass(frozen=True)
class PackageBuild:
    """A built (or cached) package and its metadata."""

    path: Path
    metadata: ArtifactMetadata
    cached: bool
    seconds: float
    #: Where a new build's time went (export, compile, load check and the check child's own steps).
    phases: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """How the package came to be and what it holds: torch, precision, batch range, GPU (or cpu)."""
        meta = self.metadata
        how = "from the package cache" if self.cached else f"built in {self.seconds:.1f} s"
        where = meta.gpu_name if meta.extra.get("device") == "cuda" else "cpu"
        return f"{how}; AOTInductor, torch {meta.runtime_version}, {meta.precision}, batch 1..{meta.max_batch}, {where}"


def package_cache(root: Path | None = None) -> ArtifactCache:
    """The artifact cache, for ``.pt2`` packages; ``UsageError`` naming the folder when it cannot be made."""
    try:
        return ArtifactCache(root, suffix=PACKAGE_SUFFIX, reader=read_package_metadata)
    except OSError as exc:
        where = Path(root) if root is not None else cache_path()
        raise unusable_cache(where, exc, "compiled packages are kept there") from exc


def cached_package(cache: ArtifactCache, key: dict[str, Any]) -> Path | None:
    """The cached package for ``key``, checked whole (names, sizes, CRCs, metadata), or None.

    A damaged entry is removed, with one warning, so the caller builds it again: a corrupt file
    in the cache must not fail every later run until someone deletes it by hand.
    """
    path = cache.artifact_path(key)
    if not path.is_file():
        return None
    try:
        check_archive(path)
        metadata = read_package_metadata(path)
    except ModelError as exc:
        warnings.warn(f"{exc}; removing this cache entry and building it again", stacklevel=3)
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise unusable_cache(path.parent, error, f"the damaged entry {path.name} cannot be removed") from error
        return None
    return path if metadata.key() == key else None


def require_writable(root: Path) -> None:
    """``UsageError`` naming ``root`` unless a file can be created in it (checked before a compile, not after)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".trtdet-write-check-", dir=root)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise unusable_cache(root, exc, "a package is compiled into it once and reused by later runs") from exc


def device_identity(device: str | Device) -> tuple[str, str]:
    """(compute capability, GPU name) of the device's GPU (plain ``cuda``: the current one), or ``("cpu", processor)``.

    These are the cache key's GPU fields: ``cuda:1`` keys on GPU 1 even when another is current.
    """
    parsed = as_device(device)
    if parsed.is_cuda:
        index = torch.cuda.current_device() if parsed.index is None else parsed.index
        major, minor = torch.cuda.get_device_capability(index)
        return f"{major}.{minor}", torch.cuda.get_device_name(index)
    return "cpu", platform.machine()


def runtime_version() -> str:
    """torch's version with its CUDA build (``2.11.0+cu130``), the package's runtime version."""
    return str(torch.__version__)


def planned_metadata(model_file: ModelFile, spec: ModelSpec, context: RunContext, names: tuple[str, ...]) -> ArtifactMetadata:
    """The metadata (and so the cache key) of the package this build would make."""
    capability, gpu_name = device_identity(context.device)
    return ArtifactMetadata(
        model=spec.name,
        names=names,
        input_size=tuple(spec.input_size),
        precision=context.precision,
        runtime=RUNTIME,
        runtime_version=runtime_version(),
        compute_capability=capability,
        gpu_name=gpu_name,
        source_sha256=file_sha256(model_file.path),
        max_batch=max(context.batch, DEFAULT_MAX_BATCH),
        build_options=package_build_options(spec, context),
        trtdet_version=__version__,
        extra={"device": context.device.kind, "source_kind": model_file.kind, "source_name": Path(model_file.path).name},
    )


#: Bumped when trtdet compiles packages differently (``compile_settings``) or converts ONNX differently, so
#: old ones rebuild. 3: sizes cast to float stay symbolic and three batch probes (``trtdet.onnx_torch.graph``).
COMPILE_REVISION = "3"


def package_build_options(spec: ModelSpec, context: RunContext) -> dict[str, Any]:
    """The key's build options: how trtdet compiles, and the model's engine variant when it has one."""
    chosen: dict[str, Any] = {"compile": COMPILE_REVISION}
    if spec.engine_variant is not None and context.device.is_cuda:
        chosen["variant"] = spec.engine_variant()
    return chosen


def eager_network(model_file: ModelFile, spec: ModelSpec, context: RunContext) -> Any:
    """The eager torch engine for ``model_file`` on ``context``'s device and precision (its module is what gets exported)."""
    eager, options = TorchBackend(), context.options.replace(cuda_graphs=False)
    # an ONNX file at this one input size (under rect ``load`` would give a per-bucket engine)
    engine = eager.fixed_engine(model_file, spec, options) if model_file.kind == "onnx" else eager.load(model_file, spec, options)
    engine.activate()
    return engine


def export_network(engine: Any, spec: ModelSpec, max_batch: int, source: str) -> Any:
    """``torch.export`` of the engine's module with a dynamic batch dimension (1..max_batch)."""
    height, width = spec.input_size
    batch = 2 if max_batch > 1 else 1
    example = torch.zeros((batch, 3, height, width), device=engine.torch_device, dtype=engine.dtype)
    example = example.contiguous(memory_format=engine.memory_format)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},) if max_batch > 1 else None
    try:
        with torch.inference_mode(False), torch.no_grad():
            return torch.export.export(engine.module, (example,), dynamic_shapes=dynamic, strict=False)
    except Exception as exc:  # torch.export raises many types (UserError, Unsupported, RuntimeError, ...)
        raise ExportError(f"{source}: torch.export cannot trace the network: {_export_failure(exc)}") from exc


def op_libraries(exported: Any) -> list[str]:
    """Python modules registering the non-torch operators the graph calls (e.g. ``torchvision``)."""
    found = set()
    for node in exported.graph.nodes:
        namespace = getattr(node.target, "namespace", None)
        if node.op == "call_function" and namespace and namespace not in _TORCH_NAMESPACES:
            found.add(namespace)
    return sorted(found)


@contextmanager
def _progress(report: Report, what: str, every: float = 15.0) -> Iterator[None]:
    """Say ``what`` now and how long it has taken every ``every`` seconds until the block ends."""
    started = time.perf_counter()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            report(f"  ... still {what} ({time.perf_counter() - started:.0f} s)")

    report(f"{what} (once; later runs load the cached package)")
    thread = threading.Thread(target=tick, name="trtdet-compile-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


#: ATen ops whose results select memory by value (indices from data) or that produce such indices.
_INDIRECT_OPS = frozenset({
    "gather", "index", "index_select", "take_along_dim", "embedding", "scatter", "scatter_add",
    "scatter_reduce", "index_put", "index_put_", "topk", "sort", "argsort", "grid_sampler_2d",
})


def indexes_with_data(exported: Any) -> bool:
    """Whether the exported graph reads memory at positions computed from tensor data (a gather
    after a TopK, as the end-to-end YOLO heads and RT-DETR's decoder do)."""
    for node in exported.graph.nodes:
        packet = getattr(node.target, "overloadpacket", None)
        if node.op == "call_function" and packet is not None and packet.__name__ in _INDIRECT_OPS:
            return True
    return False


def compile_settings(compiler: str, device_kind_name: str, *, data_indexing: bool = False) -> dict[str, Any]:
    """The Inductor settings a package compiles with; the first two shorten cold builds
    (``benchmarks/results/build_h200.md`` has the measurements).

    - ``cpp.vec_isa_ok=False`` on CUDA: Inductor otherwise compiles and runs test programs to
      pick a CPU vector ISA and builds with its flags; a CUDA package has no CPU kernels.
    - the wrapper at ``-O0``: the wrapper only queues kernels; under CUDA graphs (the default)
      it never runs, so optimising it buys nothing and costs compile time.
    - ``triton.autotune_at_compile_time=False`` on CUDA for a network that indexes with data
      (``data_indexing``): AOTInductor otherwise benchmarks each Triton kernel on synthetic
      random tensors, and a gather whose indices come from random data trips Inductor's bounds
      assert ("Failed to run autotuning code block", the end-to-end heads' TopK -> gather on an
      H100; pytorch/pytorch#194018). Off, it runs the network once on the export's example
      input (real indices) to tune, then writes the C++ wrapper: a second codegen pass, no
      slower kernels.
    """
    settings: dict[str, Any] = {"cpp.cxx": (None, compiler), "aot_inductor.compile_wrapper_opt_level": "O0"}
    if device_kind_name == "cuda":
        settings["cpp.vec_isa_ok"] = False
        if data_indexing:
            settings["triton.autotune_at_compile_time"] = False
    return settings


def compile_package(exported: Any, target: Path, report: Report, device: str = "cuda") -> str:
    """AOTInductor-compile ``exported`` (for ``device``: ``cuda`` or ``cpu``) into ``target``; returns the C++ compiler used."""
    probe_started = time.perf_counter()
    compiler, passed_over = choose_compiler()
    for reason in passed_over:
        report(f"  not compiling with {reason}")
    report(f"  C++ compiler: {compiler} (checked in {time.perf_counter() - probe_started:.1f} s)")
    settings = compile_settings(compiler, device, data_indexing=indexes_with_data(exported))
    with _progress(report, "compiling with AOTInductor"), torch._inductor.config.patch(settings):
        try:
            torch._inductor.aoti_compile_and_package(exported, package_path=str(target))
        except Exception as exc:
            raise CompileError(f"AOTInductor compile failed: {_first_line(exc)}") from exc
    return compiler


def build_package(
    model_file: ModelFile,
    spec: ModelSpec,
    context: RunContext,
    *,
    cache: ArtifactCache | None = None,
    report: Report | None = None,
    use_cache: bool = True,
) -> PackageBuild:
    """The cached package for ``model_file`` as ``context`` says (device, precision, largest batch),
    compiled first if there is none (or always, when ``use_cache`` is False)."""
    started = time.perf_counter()
    say: Report = report or (lambda _message: None)
    cache = cache or package_cache()
    source = str(model_file.path)
    engine = eager_network(model_file, spec, context)
    try:
        names = _names(engine, spec)
        metadata = planned_metadata(model_file, spec, context, names)
        key = metadata.key()
        if use_cache and (hit := cached_package(cache, key)) is not None:
            say(f"package cache hit: {hit}")
            return PackageBuild(hit, read_package_metadata(hit), True, time.perf_counter() - started)
        require_writable(cache.root)
        start_choosing()  # the C++ compiler probes run while the network exports
        say(f"exporting {Path(source).name} with torch.export (batch 1..{metadata.max_batch})")
        export_started = time.perf_counter()
        exported = export_network(engine, spec, metadata.max_batch, source)
        export_s = time.perf_counter() - export_started
        extra = {
            **metadata.extra,
            "op_libraries": op_libraries(exported),
            "input_dtype": str(engine.dtype).removeprefix("torch."),
            "memory_format": "channels_last" if context.device.is_cuda else "contiguous",
            "output_names": list(engine.output_names),
            "metadata": dict(engine.metadata),
        }
    finally:
        engine.deactivate()
    check = FreshProcessCheck(extra["op_libraries"], metadata.input_size, extra["input_dtype"], extra["device"])
    with check, tempfile.TemporaryDirectory(prefix="trtdet-aoti-", dir=cache.root) as tmp:
        built = Path(tmp) / "package.pt2"
        compile_started = time.perf_counter()
        extra["compiler"] = compile_package(exported, built, say, extra["device"])
        extra.update(export_s=round(export_s, 2), compile_s=round(time.perf_counter() - compile_started, 2))
        metadata = _with_extra(metadata, extra)
        write_package_metadata(built, metadata.to_json_dict())
        say("checking that the package loads in a fresh process")
        check_started = time.perf_counter()
        check_times = check.run(built)
        check_s = time.perf_counter() - check_started
        stored = copy_atomically(built, cache.artifact_path(key))
    cache.keep_source(Path(model_file.path), metadata.source_sha256)
    seconds = time.perf_counter() - started
    say(f"package built in {seconds:.1f} s: {stored.stat().st_size / 1e6:.1f} MB "
        f"(export {export_s:.1f} s, compile {extra['compile_s']:.1f} s, load check {check_s:.1f} s)")
    phases = {"export_s": extra["export_s"], "compile_s": extra["compile_s"], "load_check_s": round(check_s, 2),
              **{f"load_check_{name}": value for name, value in check_times.items()}}
    return PackageBuild(stored, read_package_metadata(stored), False, seconds, phases)


def _names(engine: Any, spec: ModelSpec) -> tuple[str, ...]:
    return _names_from(engine.metadata, spec)


def _names_from(metadata: dict[str, str], spec: ModelSpec) -> tuple[str, ...]:
    raw = metadata.get("names") if spec.names_from_model else None
    names = parse_class_names(raw) if raw else None
    return names or spec.class_names


def package_is_cached(model_file: ModelFile, spec: ModelSpec, context: RunContext, cache: ArtifactCache | None = None) -> bool:
    """Whether ``build_package`` with these arguments would find its package in the cache (no
    compile), decided from the file without converting the network (ONNX files; a checkpoint
    is converted to learn its class names)."""
    cache = cache or package_cache()
    if model_file.kind == "onnx":
        from trtdet.model_file import onnx_file_description

        names = _names_from(onnx_file_description(Path(model_file.path))[0], spec)
    else:
        engine = eager_network(model_file, spec, context)
        try:
            names = _names(engine, spec)
        finally:
            engine.deactivate()
    return cache.artifact_path(planned_metadata(model_file, spec, context, names).key()).is_file()


def _with_extra(metadata: ArtifactMetadata, extra: dict[str, Any]) -> ArtifactMetadata:
    return replace(metadata, extra=extra)


def _export_failure(exc: BaseException) -> str:
    """torch.export's reason in one line, with the user-code line that raised it when it says."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # Some errors print the partial graph first; the reason is the line that names the problem.
    reason = next((line for line in lines if "data-dependent" in line or "Unsupported" in line), None)
    reason = reason or (lines[0] if lines else type(exc).__name__)
    marker = "The following call raised this error:"
    if marker in lines:
        at = lines.index(marker) + 1
        if at < len(lines):
            reason += f" (at {lines[at]})"
    return reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
