"""The detector: preprocess -> engine -> decode, resolved once, called per batch."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from trtdet.batching import BatchingWorker
from trtdet.contracts.engine import Engine
from trtdet.contracts.output_check import check_outputs
from trtdet.deprecation import renamed
from trtdet.detections import Detections
from trtdet.devices import Device, as_device, on_device, torch_device
from trtdet.errors import ClosedError, ModelOutputError
from trtdet.io.inputs import ImageInput, as_bgr_image, is_single_image
from trtdet.io.limits import check_image_size
from trtdet.io.sources import SourceArguments, collect_sources
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.postprocess.decoder import Decoder, QueuingDecoder
from trtdet.preprocess.base import Preprocessor, StagingPreprocessor, letterbox_of
from trtdet.results import Result, names_dict
from trtdet.scheduler import Outcome, Phases, Scheduler
from trtdet.stage_clock import BatchClock
from trtdet.streaming import detect_stream

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


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


class NonFiniteDetectionsWarning(UserWarning):
    """A decoder gave boxes or scores that are NaN or infinite (a broken model); they were dropped."""


def finite_only(batch: Sequence[Detections]) -> list[Detections]:
    """Each image's detections without rows whose box or score is NaN/Inf (invalid JSON, no meaning).

    An image that lost rows carries the count in ``Detections.non_finite_dropped`` and is reported once
    with a ``NonFiniteDetectionsWarning`` (``trtdet run`` puts it in the image's record).
    """
    out = []
    for k, detections in enumerate(batch):
        keep = np.isfinite(detections.xyxy).all(axis=1) & np.isfinite(detections.confidence)
        if not keep.all():
            dropped = int((~keep).sum())
            detections = detections[keep]
            detections.non_finite_dropped = dropped
            warnings.warn(
                f"image {k} of its batch: dropped {dropped} detection(s) with NaN/Inf boxes or scores "
                "(the model's output is not finite)",
                NonFiniteDetectionsWarning,
                stacklevel=2,
            )
        out.append(detections)
    return out


#: ``Detector._launch``'s mark of a batch replayed as a whole-pipeline CUDA graph.
_GRAPHED = object()

#: On the GPU a batch of 2 x this many images or more that starts with the pipeline idle runs
#: as two overlapped halves (``Scheduler.split_when_idle``; ``benchmarks/results/design_h200.md``).
IDLE_SPLIT_PART = 8


def _check_sizes(images: Sequence[Any]) -> None:
    """The last guard before the warp (cv2 or the CUDA staging copy): no image over the pixel limit.

    Callers holding a scheduler add images that ``as_bgr_image`` never saw; an image too large
    fails its batch here, and the failure policy then fails that image alone.
    """
    for k, image in enumerate(images):
        shape = getattr(image, "shape", ())
        if len(shape) >= 2:
            check_image_size(f"image {k}", int(shape[1]), int(shape[0]))


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
        device: str | Device = "cpu",
        batch: int = 1,
        model_source: str = "",
        synchronize: Any = None,
        stream: Any = None,
        backend_passed_over: tuple[str, ...] = (),
        batch_size: int | None = None,
    ) -> None:
        batch = renamed(batch, batch_size, old="batch_size", new="batch", new_given=batch != 1)
        self.spec = spec
        self.preprocessor = preprocessor
        self.engine = engine
        self.decoder = decoder
        #: The decoder queues a batch's decode and collects it later (``QueuingDecoder``): the GPU
        #: pipeline then keeps two batches launched. Decided once; the decoder never changes.
        self._decoder_queues = isinstance(decoder, QueuingDecoder)
        placement = as_device(device)  # ``trtdet.load`` passes its RunContext's Device: not parsed again
        self.device = device if isinstance(device, str) else str(placement)
        if not engine.is_active:
            with on_device(placement):
                engine.activate()
        limit = engine.max_batch or batch
        #: The largest number of images sent to the engine in one call (at most the engine's ``max_batch``).
        self.batch = max(1, min(batch, limit))
        self.model_source = model_source
        #: Why ``--backend auto`` passed over the backends ranked above this one ("tensorrt: not installed").
        self.backend_passed_over = backend_passed_over
        self.times = StageTimes()
        self.record_times = False
        #: The network input of the latest batch, ``(B, 3, H, W)`` (``trtdet run``'s ``Speed:`` line).
        self.last_input_shape: tuple[int, ...] | None = None
        self._synchronize = synchronize
        self._batcher: Any = None
        self._closed = False
        self._engine_gone = False
        # Preprocessors and decoders reuse buffers between batches, so one batch runs at a
        # time; the batcher is created once even when many threads submit at the same moment.
        self._run_lock = threading.Lock()
        self._batcher_lock = threading.Lock()
        #: The first batch's outputs are checked against the declared shapes (``check_outputs``);
        #: a contradiction is kept and raised for every later batch too.
        self._outputs_checked = False
        self._output_problem: ModelOutputError | None = None
        self._stream: Any = stream
        if placement.is_cuda and stream is None:
            # One stream per pipeline, on the detector's GPU: preprocess, engine and decode
            # kernels all queue on it (and entering it makes that GPU current, see _on_stream).
            # ``trtdet.load`` makes it earlier and passes it (it is in the RunContext).
            self._stream = torch.cuda.Stream(device=torch_device(placement))
        #: The whole GPU pipeline of small batches as one CUDA graph per key (``trtdet.cuda.pipeline_graph``);
        #: None where the stages cannot have it. ``pipeline_graphs.enabled = False`` turns it off.
        self.pipeline_graphs: Any = None
        if self._stream is not None:
            from trtdet.cuda.pipeline_graph import for_pipeline

            self.pipeline_graphs = for_pipeline(preprocessor, engine, decoder)

    @property
    def batch_size(self) -> int:
        """Deprecated name of ``batch``."""
        warnings.warn("Detector.batch_size is deprecated: it was renamed Detector.batch", DeprecationWarning,
                      stacklevel=2)
        return self.batch

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        warnings.warn("Detector.batch_size is deprecated: it was renamed Detector.batch", DeprecationWarning,
                      stacklevel=2)
        self.batch = value

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def names(self) -> dict[int, str]:
        """The class names as ``{id: name}`` (as on every ``Result``)."""
        return names_dict(self.spec.class_names)

    @overload
    def __call__(self, images: ImageInput) -> Result: ...

    @overload
    def __call__(self, images: Sequence[ImageInput]) -> list[Result]: ...

    def __call__(self, images):
        """The ``Result`` of one image, or a list of them for a list of images.

        An image is an HWC uint8 BGR array (gray, BGRA, 16-bit and float arrays are converted
        as files are; a float array with NaN or infinite pixels is an ``InputError``), a file
        path (read as ``trtdet run`` reads files), a URL (its first frame, read by ``run``'s
        stream reader) or a PIL image; a list may mix them.
        """
        if is_single_image(images):
            return self.detect([images])[0]
        if images is None or isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
            as_bgr_image(images)  # raises the TypeError naming what was expected
        return self.detect(list(images))

    def detect(self, images: Sequence[ImageInput]) -> list[Result]:
        """Detect on every image (array, path or PIL image), in batches of the detector's batch size.

        Each ``Result`` knows its source (the path or URL; ``image K`` for an array or PIL
        image), the image it ran on, the class names and each stage's milliseconds.

        On the GPU, with a preprocessor that can stage ahead, the next batch is copied and
        uploaded while the current one runs. An image that fails raises its own error (its
        batch is retried one by one to find it). Images are checked first (``as_bgr_image``):
        gray, BGRA, 16-bit and float arrays are converted, anything else raises before any runs.
        """
        self._check_open()
        sources = [_source_name(image, k) for k, image in enumerate(images)]
        images = [as_bgr_image(image, k) for k, image in enumerate(images)]  # all checked before any runs
        results: list[Result] = []
        with self.scheduler() as scheduler:
            for index, image in enumerate(images):
                self._collect(scheduler.add(as_bgr_image(image, f"image {index}")), results)
            self._collect(scheduler.drain(), results)
        for result, source, image in zip(results, sources, images, strict=True):
            result.source, result.image = source, image
        return results

    @staticmethod
    def _collect(outcomes: list[Outcome[Result]], results: list[Result]) -> None:
        error = next((outcome.error for outcome in outcomes if outcome.error is not None), None)
        if error is not None:
            # Raised with no local left pointing at it: the traceback keeps this frame, and a
            # frame holding its own exception is a cycle that keeps the batch alive.
            try:
                raise error
            finally:
                error = outcomes = None  # type: ignore[assignment]
        results.extend(outcome.result for outcome in outcomes)  # type: ignore[misc]

    def scheduler(self) -> Scheduler[Any, Result]:
        """A new scheduler on this pipeline: ``add`` images, get ``Outcome``s back in order.

        It overlaps batches on the GPU when the preprocessor can stage ahead (and stage times
        are not being recorded); one thread uses it at a time.
        """
        self._check_open()
        phases = None
        if self._can_overlap():
            phases = Phases(self._session, self._stage, self._launch, self._finish, self._discard,
                            launch_ahead=self._decoder_queues)
        split = IDLE_SPLIT_PART if phases is not None else 0
        return Scheduler(self._run_batch, max_batch=self.batch, phases=phases, split_when_idle=split,
                         batch_key=self._batch_key())

    def _batch_key(self) -> Callable[[Any], Hashable] | None:
        """Under the rect letterbox, images of one shape share a batch (the network input then
        fits them all, as for each alone: Ultralytics' ``same_shapes``), so a result never
        depends on what else was queued with the image; None for geometries that fit any mix."""
        if letterbox_of(self.preprocessor) != "rect":
            return None
        return _image_shape

    def _can_overlap(self) -> bool:
        return self._stream is not None and not self.record_times and isinstance(self.preprocessor, StagingPreprocessor)

    def _on_stream(self) -> contextlib.AbstractContextManager[Any]:
        """The pipeline's stream as torch's current one (every stage queues its work there).

        ``torch.cuda.stream`` also makes the stream's GPU the current device for the block, so
        a detector on ``cuda:1`` runs there from any thread (numba follows torch's current GPU).
        """
        if self._stream is None:
            return contextlib.nullcontext()
        return torch.cuda.stream(self._stream)

    # The three phases of an overlapped run (see ``trtdet.scheduler``); the scheduler holds
    # ``_session()`` (the pipeline to itself) from the first launch until nothing is in flight.
    def _session(self) -> contextlib.AbstractContextManager[Any]:
        return self._run_lock

    # Each batch carries a ``BatchClock``: CUDA events on the stream between warp, engine and
    # decode, read in ``_finish`` once the batch is done (``Result.speed``; no extra sync).
    def _stage(self, images: Sequence[np.ndarray]) -> tuple[Any, BatchClock]:
        self._check_engine()  # under the session's lock, which close() takes before deactivating
        _check_sizes(images)
        clock = BatchClock(self._stream)
        start = time.perf_counter()
        with self._on_stream():
            graphs = self.pipeline_graphs
            staged = None
            if graphs is not None and self._outputs_checked:  # the first batch ran (and checked) the engine directly
                staged = graphs.stage(images)  # None: the ordinary path
            if staged is None:
                staged = self.preprocessor.stage(images)  # type: ignore[attr-defined]  # a StagingPreprocessor
        clock.host_pre = time.perf_counter() - start  # the host copy; the upload is in the warp's span
        return staged, clock

    def _launch(self, staged_batch: tuple[Any, BatchClock]) -> tuple[Any, Any, BatchClock]:
        staged, clock = staged_batch
        with self._on_stream():
            clock.mark()
            if self.pipeline_graphs is not None and self.pipeline_graphs.owns(staged):
                # One replay holds the warp, the engine and the decode: its span counts as inference.
                clock.marks.append(clock.marks[-1])
                self.last_input_shape = tuple(staged.entry.input.shape)
                launched = self.pipeline_graphs.launch(staged)
                clock.mark()
                clock.marks.append(clock.marks[-1])
                return launched, _GRAPHED, clock
            batch = self.preprocessor.warp(staged)  # type: ignore[attr-defined]
            clock.mark()
            self.last_input_shape = tuple(batch.tensor.shape)
            outputs = self._engine_outputs(batch.tensor)
            clock.mark()
            if self._decoder_queues:
                # Queued now, behind this batch's engine and before the next one's, so an engine
                # that reuses its output buffers is safe while two batches are launched.
                queued = self.decoder.queue(outputs, batch.transforms)  # type: ignore[attr-defined]
                clock.mark()
                return queued, None, clock
            return outputs, batch.transforms, clock

    def _finish(self, launched: tuple[Any, Any, BatchClock]) -> list[Result]:
        outputs, transforms, clock = launched
        with self._on_stream():
            if transforms is _GRAPHED:
                clock.wait_last()  # recorded right behind the replay: the wait finish() does
                start = time.perf_counter()
                detections = finite_only(self.pipeline_graphs.finish(outputs))
                clock.host_post = time.perf_counter() - start
                return self._results(detections, clock)
            if transforms is None:
                clock.wait_last()  # right behind the decode's own done event: the wait collect() does
                start = time.perf_counter()
                detections = finite_only(self.decoder.collect(outputs))  # type: ignore[attr-defined]
                clock.host_post = time.perf_counter() - start
            else:
                detections = finite_only(self.decoder(outputs, transforms))  # returns host arrays: the stream is idle
                clock.mark()
                clock.wait_last()
        return self._results(detections, clock)

    def _results(self, detections: Sequence[Detections], clock: BatchClock) -> list[Result]:
        """Each image's detections as a ``Result`` with the class names and its share of the batch's time."""
        speed, names = clock.speed(len(detections)), self.names
        return [Result.of(found, names=names, speed=dict(speed)) for found in detections]

    def _engine_outputs(self, tensor: Any) -> dict[str, Any]:
        """The engine's outputs of one batch; the first batch's are checked against the declared shapes."""
        if self._output_problem is not None:
            raise self._output_problem
        outputs = self.engine(tensor)
        if not self._outputs_checked:
            try:
                check_outputs(self.engine.output_shapes, outputs, self.model_source or "model")
            except ModelOutputError as exc:
                self._output_problem = exc
                raise
            self._outputs_checked = True
        return outputs

    def _discard(self) -> None:
        self.preprocessor.discard_staged()  # type: ignore[attr-defined]
        if self.pipeline_graphs is not None:
            self.pipeline_graphs.discard()

    def _run_batch(self, images: Sequence[np.ndarray]) -> list[Result]:
        with self._run_lock, self._on_stream():
            self._check_engine()
            return self._run_stages(images)

    def _run_stages(self, images: Sequence[np.ndarray]) -> list[Result]:
        """One batch, stage after stage, timed: host clocks on the CPU (with a sync after each
        stage under ``record_times``), CUDA events on a GPU stream otherwise."""
        _check_sizes(images)
        timed = self.record_times
        sync = (self._synchronize or (lambda: None)) if timed else (lambda: None)
        clock = BatchClock(None if timed else self._stream)
        clock.mark()
        batch = self.preprocessor(images)
        sync()
        clock.mark()
        self.last_input_shape = tuple(batch.tensor.shape)
        outputs = self._engine_outputs(batch.tensor)
        sync()
        clock.mark()
        detections = finite_only(self.decoder(outputs, batch.transforms))  # host arrays: the stream is idle after
        clock.mark()
        clock.wait_last()
        if timed:
            preprocess, infer, decode = clock.seconds()
            self.times.preprocess.append(preprocess)
            self.times.infer.append(infer)
            self.times.decode.append(decode)
            self.times.batch_sizes.append(len(images))
        return self._results(detections, clock)

    def stream(self, sources: SourceArguments, *, workers: int | None = None) -> Iterator[Result]:
        """Detect on everything ``sources`` names, as ``trtdet run --source`` does, frame by frame.

        ``sources``: one or a list of image files, directories (their image and video files),
        glob patterns, video files, camera indices and stream URLs. Yields a ``Result`` per
        frame, in order: ``result.source``/``result.index`` say where it came from (index: the
        video frame, None for an image), ``result.image`` is the BGR image; an input that could
        not be read or detected has ``result.error`` (one line), no detections and no image.
        Images are read ahead on ``workers`` threads (default: up to 4).
        """
        return detect_stream(self, collect_sources(sources).sources, workers=workers)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: every way in then raises ``ClosedError``."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("detector is closed")

    def _check_engine(self) -> None:
        """A batch may still run after ``close()`` began (accepted requests finish), not after the engine went."""
        if self._engine_gone:
            raise ClosedError("detector is closed")

    def submit(self, image: ImageInput) -> Future[Result]:
        """Queue one image; a worker forms batches (up to ``batch``) and resolves the future.

        On the GPU the worker stages the next batch while the current one runs; while it has
        requests queued it keeps the detector, so a direct call waits until it is idle.
        Raises ``ClosedError`` (``detector is closed``) after ``close()``; a request accepted
        before ``close()`` is always resolved.
        """
        self._check_open()
        image = as_bgr_image(image)
        with self._batcher_lock:
            self._check_open()
            if self._batcher is None:
                scheduler = self.scheduler()
                self._batcher = BatchingWorker(
                    self._run_batch, max_batch=self.batch, phases=scheduler.phases,
                    split_when_idle=scheduler.split_when_idle, batch_key=scheduler.batch_key,
                )
            batcher = self._batcher
        try:
            return batcher.submit(image)
        except ClosedError:  # close() shut the worker down since we took it
            raise ClosedError("detector is closed") from None

    def close(self) -> None:
        """Stop the batching worker (accepted requests are finished), then deactivate the engine.

        Waits for a batch that is running; afterwards every call raises ``ClosedError``.
        Closing twice does nothing.
        """
        with self._batcher_lock:
            self._closed = True
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.shutdown(wait=True)
        with self._run_lock:  # no batch is half way through the engine when it goes
            self._engine_gone = True
            if self.pipeline_graphs is not None:
                self.pipeline_graphs.close()
            if self.engine.is_active:
                self.engine.deactivate()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _source_name(image: Any, index: int) -> str:
    """What a ``Result`` says it came from: the path or URL as given, else ``image K``."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return str(image if not isinstance(image, bytes) else image.decode(errors="replace"))
    return f"image {index}"


def _image_shape(image: Any) -> Hashable:
    """An image's (H, W) for batching; None for inputs not yet decoded (paths: batched as they come)."""
    shape = getattr(image, "shape", None)
    return tuple(shape[:2]) if shape is not None else None
