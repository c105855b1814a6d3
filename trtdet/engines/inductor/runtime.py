"""Running an AOTInductor package: load it once, then one call per batch (CUDA graphs optional).

The package is loaded with ``run_single_threaded=True``: the runner then neither locks nor
waits on events between calls, which is what makes it capturable in a CUDA graph (the default
runner's event handling is refused inside a capture: "operation not permitted when stream is
capturing"). A detector runs one batch at a time, so one runner is enough. Loading skips
inductor's CPU vector-ISA probe (``cpp.vec_isa_ok=False``), which compiles test programs to
fill a warning field and took tens of seconds in a fresh process (``benchmarks/results/build_h200.md``). torch is handed a checked
private copy of the package, never the file itself (``trtdet.engines.inductor.unpack``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.contracts.engine import BaseEngine, Shape
from trtdet.devices import Device, as_device, on_device, torch_device
from trtdet.errors import ModelError
from trtdet.lazy import lazy_import

from .unpack import private_copy

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def load_runner(path: Path, metadata: ArtifactMetadata, device_index: int | None = None) -> Any:
    """The package's compiled model, ready to call; ``ModelError`` naming the file when it cannot load.

    ``device_index`` places a CUDA package's weights and kernels on that GPU (None: the current one).
    """
    for library in metadata.extra.get("op_libraries", []):
        try:
            importlib.import_module(library)
        except ImportError as exc:
            raise ModelError(
                f"{path}: the package calls operators of {library!r}, which does not import here ({exc}); "
                f"pip install {library}"
            ) from exc
    # torch unpacks what it is given unchecked: it gets a checked private copy (see ``unpack``).
    with private_copy(path) as copy:
        try:
            with torch._inductor.config.patch({"cpp.vec_isa_ok": False}), _quiet_loader_warnings():
                if device_index is None:
                    runner = torch._inductor.aoti_load_package(str(copy.path), run_single_threaded=True)
                else:
                    runner = torch._inductor.aoti_load_package(str(copy.path), run_single_threaded=True, device_index=device_index)
        except ImportError:  # a missing package (imported on first use) is not the input's problem
            raise
        except Exception as exc:  # the loader raises RuntimeError for most problems
            text = str(exc).strip().splitlines()
            reason = copy.local_names(text[0]) if text else type(exc).__name__
            raise ModelError(f"{path}: AOTInductor cannot load the package: {reason}") from exc
    if copy.lock is not None:  # torch's unpack folder is in use while the model lives
        with contextlib.suppress(TypeError):  # a runner without weak references: the lock lasts as long as the process
            weakref.finalize(runner, os.close, copy.lock)
    return runner


#: torch's loggers that warn on every load about fields trtdet checks itself: the CPU vector ISA
#: (skipped above: a CUDA package has no CPU kernels) and the archive's version stamp.
_LOADER_LOGGERS = ("torch.export.pt2_archive._package", "torch._inductor.package.package")


@contextlib.contextmanager
def _quiet_loader_warnings() -> Any:
    import logging

    loggers = [logging.getLogger(name) for name in _LOADER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class InductorEngine(BaseEngine):
    """An AOTInductor package: ``engine(batch [B, 3, H, W]) -> {output name: [B, ...]}``.

    The package is loaded on activation. On CUDA inputs are cast to the package's dtype and
    NHWC layout (what it was traced with) and outputs stay torch tensors in the network's
    precision; on the CPU they come back as float32 numpy arrays.
    """
    backend = "inductor"

    def __init__(self, path: Path, metadata: ArtifactMetadata, cuda_graphs: bool, device: str | Device | None = None) -> None:
        # ``device`` picks the GPU of a CUDA package (``cuda:1``; the backend passes its context's
        # ``Device``); by default the package's own kind.
        named = device or str(metadata.extra.get("device", "cpu"))
        super().__init__(named if isinstance(named, str) else str(named))
        #: The parsed device (parsed here once when given as a name).
        self.placement: Device = as_device(named)
        self.path = Path(path)
        self.package_metadata = metadata
        self.input_name = "images"
        height, width = metadata.input_size
        self.input_shape: Shape = (None, 3, height, width)
        self.output_names = list(metadata.extra.get("output_names", ["output"]))
        self.output_shapes: dict[str, Shape] = {name: () for name in self.output_names}
        self.max_batch: int | None = metadata.max_batch
        self.metadata: dict[str, str] = {**dict(metadata.extra.get("metadata", {})), **_names_entry(metadata)}
        self.cuda_graphs = cuda_graphs and self.device != "cpu"
        self._runner: Any = None
        self._torch_device: Any = None
        self._call: Any = None
        self._dtype: Any = None
        self._memory_format: Any = None

    def activate_impl(self) -> None:
        """Load the package."""
        from trtdet.engines.graphs import CudaGraphRunner

        self._torch_device = torch_device(self.placement)
        with on_device(self.placement):
            self._runner = load_runner(self.path, self.package_metadata, self._torch_device.index)
        self._dtype = getattr(torch, str(self.package_metadata.extra.get("input_dtype", "float32")))
        channels_last = self.package_metadata.extra.get("memory_format") == "channels_last"
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._call = CudaGraphRunner(self._runner, self.package_metadata.max_batch) if self.cuda_graphs else self._runner

    def infer_impl(self, batch: Any) -> dict[str, Any]:
        from trtdet.engines.torch_run import run_network

        layout = (self._torch_device, self._dtype, self._memory_format)
        return run_network(self._call, batch, layout, self.output_names, grad_mode=torch.no_grad)

    def ungraphed_call(self, batch: Any) -> dict[str, Any]:
        """One batch through the package itself, never through its own CUDA graph: what a
        captured whole-pipeline graph (``trtdet.cuda.pipeline_graph``) records. CUDA only."""
        from trtdet.engines.torch_run import run_network

        layout = (self._torch_device, self._dtype, self._memory_format)
        return run_network(self._runner, batch, layout, self.output_names, grad_mode=torch.no_grad)

    def deactivate_impl(self) -> None:
        self._runner = None
        self._call = None


def _names_entry(metadata: ArtifactMetadata) -> dict[str, str]:
    import json

    return {"names": json.dumps(list(metadata.names))} if metadata.names else {}
