"""The detector: preprocess -> engine -> decode, resolved once, called per batch."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from trtdet.detections import Detections
from trtdet.engines.base import Engine
from trtdet.model import Decoder, ModelSpec
from trtdet.preprocess.base import Preprocessor, StagingPreprocessor


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
    plain calls. ``submit`` queues single images for a background worker that batches them.
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
        if device == "cuda":
            import torch

            # One stream per pipeline: preprocess, engine and decode kernels all queue on it.
            self._stream = torch.cuda.Stream()

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
        """Detect on every image, in chunks of the detector's batch size.

        On the GPU, with a preprocessor that can stage ahead, the next chunk is copied and
        uploaded while the current one runs (see ``_run_overlapped``).
        """
        chunks = [images[start : start + self.batch_size] for start in range(0, len(images), self.batch_size)]
        if len(chunks) > 1 and self._can_overlap():
            return self._run_overlapped(chunks)
        results: list[Detections] = []
        for chunk in chunks:
            results.extend(self._run_batch(chunk))
        return results

    def _can_overlap(self) -> bool:
        return self._stream is not None and not self.record_times and isinstance(self.preprocessor, StagingPreprocessor)

    def _run_overlapped(self, chunks: Sequence[Sequence[np.ndarray]]) -> list[Detections]:
        """Run chunks back to back, staging chunk k+1 while the GPU runs chunk k.

        Order per chunk: warp k and queue its engine run; then stage k+1 (host copy into pinned
        memory and an upload on the preprocessor's side stream, overlapping the engine); then
        decode k, which waits for its results. Decode k is queued before engine k+1, so engines
        that reuse their output buffers (CUDA graphs, TensorRT) are safe.
        """
        results: list[Detections] = []
        with self._session():
            try:
                staged = self._stage(chunks[0])
                for index in range(len(chunks)):
                    launched = self._launch(staged)
                    if index + 1 < len(chunks):
                        staged = self._stage(chunks[index + 1])
                    results.extend(self._finish(launched))
            except BaseException:
                self._discard()
                raise
        return results

    # The three phases of an overlapped run (see ``_run_overlapped`` and ``batching.Phases``);
    # callers hold ``_session()`` around them.
    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        import torch

        with self._run_lock, torch.cuda.stream(self._stream):
            yield

    def _stage(self, images: Sequence[np.ndarray]) -> Any:
        return self.preprocessor.stage(images)  # type: ignore[attr-defined]  # a StagingPreprocessor

    def _launch(self, staged: Any) -> tuple[dict[str, Any], list]:
        batch = self.preprocessor.warp(staged)  # type: ignore[attr-defined]
        return self.engine(batch.tensor), batch.transforms

    def _finish(self, launched: tuple[dict[str, Any], list]) -> list[Detections]:
        outputs, transforms = launched
        return self.decoder(outputs, transforms)

    def _discard(self) -> None:
        self.preprocessor.discard_staged()  # type: ignore[attr-defined]

    def _run_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self._run_lock:
            if self._stream is None:
                return self._run_stages(images)
            import torch

            with torch.cuda.stream(self._stream):
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
                from trtdet.batching import BatchingWorker, Phases

                phases = None
                if self._can_overlap():
                    phases = Phases(self._session, self._stage, self._launch, self._finish, self._discard)
                self._batcher = BatchingWorker(self._run_batch, max_batch=self.batch_size, phases=phases)
            batcher = self._batcher
        return batcher.submit(image)

    def close(self) -> None:
        """Stop the batching worker (pending requests are finished) and release the engine."""
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.shutdown(wait=True)
        self.engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
