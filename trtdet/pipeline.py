"""The detector: preprocess -> engine -> decode, resolved once, called per batch."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from trtdet.detections import Detections
from trtdet.devices import is_cuda, on_device, torch_device
from trtdet.engines.base import Engine
from trtdet.model import Decoder, ModelSpec
from trtdet.preprocess.base import Preprocessor, StagingPreprocessor
from trtdet.scheduler import Outcome, Phases, Scheduler


@dataclass
class StageTimes:
    """Accumulated wall time per stage, in seconds, and the images it covers."""

    preprocess: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def clear(self) -> None:
        for values in (self.preprocess, self.infer, self.decode, self.batch_sizes):
            values.clear()


class Detector:
    """A ready pipeline for one model: call it on a HWC uint8 BGR image or a list of them.

    The hooks were resolved when it was built (``trtdet.load``); here each batch is three
    plain calls. Every way in -- ``detect(many)``, ``submit``, the ``trtdet run`` loop --
    goes through a ``trtdet.scheduler.Scheduler`` (``scheduler()``), so batches are formed,
    overlapped on the GPU and retried one by one after a failure in one place.

    ``spec`` is the model as loaded (overrides applied, then adapted to the model file): the
    one spec the preprocessor, the decoder and everything built later were made from. The
    engine is activated here and deactivated by ``close()``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        preprocessor: Preprocessor,
        engine: Engine,
        decoder: Decoder,
        *,
        device: str = "cpu",
        batch_size: int = 1,
        model_source: str = "",
        synchronize: Any = None,
    ) -> None:
        self.spec = spec
        self.preprocessor = preprocessor
        self.engine = engine
        self.decoder = decoder
        self.device = device
        if not engine.is_active:
            with on_device(device):
                engine.activate()
        limit = engine.max_batch or batch_size
        self.batch_size = max(1, min(batch_size, limit))
        self.model_source = model_source
        self.times = StageTimes()
        self.record_times = False
        self._synchronize = synchronize
        self._batcher: Any = None
        # Preprocessors and decoders reuse buffers between batches, so one batch runs at a
        # time; the batcher is created once even when many threads submit at the same moment.
        self._run_lock = threading.Lock()
        self._batcher_lock = threading.Lock()
        self._stream: Any = None
        if is_cuda(device):
            import torch

            # One stream per pipeline, on the detector's GPU: preprocess, engine and decode
            # kernels all queue on it (and entering it makes that GPU current, see _on_stream).
            self._stream = torch.cuda.Stream(device=torch_device(device))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def backend(self) -> str:
        return self.engine.backend

    @overload
    def __call__(self, images: np.ndarray) -> Detections: ...

    @overload
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...

    def __call__(self, images):
        if isinstance(images, np.ndarray) and images.ndim == 3:
            return self.detect([images])[0]
        return self.detect(list(images))

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect on every image, in batches of the detector's batch size.

        On the GPU, with a preprocessor that can stage ahead, the next batch is copied and
        uploaded while the current one runs. An image that fails raises its own error (its
        batch is retried one by one to find it).
        """
        results: list[Detections] = []
        with self.scheduler() as scheduler:
            for image in images:
                self._collect(scheduler.add(image), results)
            self._collect(scheduler.drain(), results)
        return results

    @staticmethod
    def _collect(outcomes: list[Outcome[Detections]], results: list[Detections]) -> None:
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
            results.append(outcome.result)  # type: ignore[arg-type]

    def scheduler(self) -> Scheduler[Any, Detections]:
        """A new scheduler on this pipeline: ``add`` images, get ``Outcome``s back in order.

        It overlaps batches on the GPU when the preprocessor can stage ahead (and stage times
        are not being recorded); one thread uses it at a time.
        """
        phases = None
        if self._can_overlap():
            phases = Phases(self._session, self._stage, self._launch, self._finish, self._discard)
        return Scheduler(self._run_batch, max_batch=self.batch_size, phases=phases)

    def _can_overlap(self) -> bool:
        return self._stream is not None and not self.record_times and isinstance(self.preprocessor, StagingPreprocessor)

    def _on_stream(self) -> contextlib.AbstractContextManager[Any]:
        """The pipeline's stream as torch's current one (every stage queues its work there).

        ``torch.cuda.stream`` also makes the stream's GPU the current device for the block, so
        a detector on ``cuda:1`` runs there from any thread (numba follows torch's current GPU).
        """
        if self._stream is None:
            return contextlib.nullcontext()
        import torch

        return torch.cuda.stream(self._stream)

    # The three phases of an overlapped run (see ``trtdet.scheduler``); the scheduler holds
    # ``_session()`` (the pipeline to itself) from the first launch until nothing is in flight.
    def _session(self) -> contextlib.AbstractContextManager[Any]:
        return self._run_lock

    def _stage(self, images: Sequence[np.ndarray]) -> Any:
        with self._on_stream():
            return self.preprocessor.stage(images)  # type: ignore[attr-defined]  # a StagingPreprocessor

    def _launch(self, staged: Any) -> tuple[dict[str, Any], list]:
        with self._on_stream():
            batch = self.preprocessor.warp(staged)  # type: ignore[attr-defined]
            return self.engine(batch.tensor), batch.transforms

    def _finish(self, launched: tuple[dict[str, Any], list]) -> list[Detections]:
        outputs, transforms = launched
        with self._on_stream():
            return self.decoder(outputs, transforms)

    def _discard(self) -> None:
        self.preprocessor.discard_staged()  # type: ignore[attr-defined]

    def _run_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self._run_lock, self._on_stream():
            return self._run_stages(images)

    def _run_stages(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if not self.record_times:
            batch = self.preprocessor(images)
            return self.decoder(self.engine(batch.tensor), batch.transforms)
        sync = self._synchronize or (lambda: None)
        t0 = time.perf_counter()
        batch = self.preprocessor(images)
        sync()
        t1 = time.perf_counter()
        outputs = self.engine(batch.tensor)
        sync()
        t2 = time.perf_counter()
        detections = self.decoder(outputs, batch.transforms)
        t3 = time.perf_counter()
        self.times.preprocess.append(t1 - t0)
        self.times.infer.append(t2 - t1)
        self.times.decode.append(t3 - t2)
        self.times.batch_sizes.append(len(images))
        return detections

    def submit(self, image: np.ndarray) -> Future[Detections]:
        """Queue one image; a worker forms batches (up to ``batch_size``) and resolves the future.

        On the GPU the worker stages the next batch while the current one runs; while it has
        requests queued it keeps the detector, so a direct call waits until it is idle.
        """
        with self._batcher_lock:
            if self._batcher is None:
                from trtdet.batching import BatchingWorker

                phases = self.scheduler().phases
                self._batcher = BatchingWorker(self._run_batch, max_batch=self.batch_size, phases=phases)
            batcher = self._batcher
        return batcher.submit(image)

    def close(self) -> None:
        """Stop the batching worker (pending requests are finished) and deactivate the engine."""
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.shutdown(wait=True)
        if self.engine.is_active:
            self.engine.deactivate()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
