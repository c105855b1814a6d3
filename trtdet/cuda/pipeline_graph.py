"""The whole GPU pipeline of a small batch as one CUDA graph: upload, warp, engine, decode, result copy.

Per call the host copies the images into a pinned staging buffer (plain memcpy, outside the
graph), launches the graph once and waits once; the graph holds the upload of that buffer,
the warp/normalise kernel (numba), the engine (its package run directly, not its own nested
graph), the decode kernels (numba) and the copy of the detections into pinned host memory, read
there with no allocation per call. numba kernels are launched on the capturing stream with
device arrays only; every buffer is allocated before capture.

Key (``GraphKey``): each image's (H, W) -- the staging metadata, the letterbox transforms and
the network input size depend only on them -- plus the network input dtype and whether the
upload is in the graph. Frames already in pinned memory (``trtdet.pinned_frames``) are uploaded
from where they are, by copies queued just before the replay (their addresses change per call,
a graph's cannot), so their graph starts at the warp. A camera stream hits one key.

Each key holds two slots (a graph each, captured once): with two batches launched ahead
(``Scheduler`` with ``launch_ahead``) the host fills one slot's staging while the other slot's
graph runs, and waits for a slot's previous replay before refilling it. Device buffers are
per key (replays run in order on the pipeline's one stream); pinned staging and results are
per slot. All graphs of a pipeline share one memory pool, so the engine's activations are held
once for the largest key, not per key. Keys are kept in an LRU of ``capacity`` (default 8);
memory per key, for B images of H x W at a network input h x w (``Entry.nbytes`` counts it):
device staging B*H*W*3 bytes (+ metadata), network input B*3*h*w*(2 or 4), pinned staging
2 * B*H*W*3, the decoders' scratch and results (YOLO11n: ~0.5 MB per image; CenterNet: ~1 MB).
A 1080p batch of 1 at 640x640 fp16 is ~21 MB; eight such keys ~170 MB, plus the shared pool.

Self-check, as for engine graphs (``trtdet.engines.graphs``): each capture is replayed on the
batch that made it, after a warm-up on the inverted images and with the input and results
poisoned with NaN, and compared with a direct (uncaptured) run of the same steps: the network
input must be equal, the engine outputs within 1e-3, the detections equal; otherwise (or if
capture fails) pipeline graphs turn off for this detector with one warning, and batches take
the un-graphed path, engine graphs still on.

Batches over ``max_batch`` images (default 4), CUDA tensors as images, and batches while the
graphs are off take the ordinary path (two batches in flight, staging copies split over
threads and overlapped with the upload), which keeps big-batch throughput.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trtdet.cuda.graph_keys import GraphKey, graph_key
from trtdet.detections import Detections
from trtdet.lazy import lazy_import
from trtdet.lru import LRU

__all__ = ["LRU", "GraphKey", "GraphMismatch", "PipelineGraphs", "for_pipeline", "graph_key"]

torch: Any = lazy_import("torch")

#: Largest batch run through a pipeline graph; bigger batches take the overlapped ordinary path.
DEFAULT_MAX_BATCH = 4
#: Keys kept (each: two captured graphs and their buffers).
DEFAULT_CAPACITY = 8
#: A key is captured when a batch of it comes this many times (of the last ``SEEN_KEYS`` keys):
#: a camera stream captures on its second frame, while a mix of shapes that never repeats does
#: not pay a capture (tens of ms) per batch.
CAPTURE_AFTER = 2
SEEN_KEYS = 64
#: An image of this many bytes or more is copied into staging by ``FILL_THREADS`` threads at once
#: (``TRTDET_PIPELINE_GRAPH_COPY_THREADS``; 1: one thread).
PARALLEL_FILL_BYTES = 2 << 20
FILL_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))
#: Warm-up runs before each capture (cuDNN/cuBLAS pick and allocate their workspaces there).
WARMUP = 2

class GraphMismatch(RuntimeError):
    """A captured pipeline's replay does not reproduce a direct run of the same steps."""


@dataclass
class _Slot:
    """One captured graph of a key with its pinned staging and its decode plan (pinned results)."""

    host: Any
    decode: Any
    graph: Any = None
    done: Any = None
    #: Staged and not launched / launched and not finished.
    pending: bool = False
    busy: bool = False

    def wait(self) -> None:
        if self.done is not None:
            self.done.synchronize()


@dataclass
class Entry:
    """The buffers and graphs of one key."""

    key: GraphKey
    transforms: list[Any]
    offsets: list[int]
    meta_bytes: int
    dev: Any
    input: Any
    slots: list[_Slot] = field(default_factory=list)
    turn: int = 0

    @property
    def total(self) -> int:
        return self.meta_bytes + self.key.image_bytes

    @property
    def nbytes(self) -> int:
        """Bytes this key holds outside the shared pool: staging (device and pinned), network input, decode results."""
        size = self.dev.numel() + self.input.numel() * self.input.element_size()
        return size + sum(slot.host.numel() + slot.decode.nbytes for slot in self.slots)

    def release(self) -> None:
        """Wait for the slots' last replays, then drop the graphs."""
        for slot in self.slots:
            slot.wait()
            slot.graph = None


@dataclass
class GraphStaged:
    """A batch copied into a slot's pinned staging, ready to replay."""

    entry: Entry
    slot: _Slot
    #: (byte offset, caller's pinned image) uploaded outside the graph just before the replay.
    pinned: list[tuple[int, np.ndarray]]


@dataclass
class GraphLaunched:
    """A replayed batch; ``PipelineGraphs.finish`` waits for it and reads its detections."""

    slot: _Slot
    #: Keeps the caller's pinned images alive until their upload has run.
    keep: list[Any]


def _fill(
    host: np.ndarray, offsets: Sequence[int], images: Sequence[np.ndarray], invert: bool = False, pool: Any = None,
    threads: int = 1, bands: Sequence[Any] | None = None,
) -> None:
    """Copy ``images`` (or ``255 - image``) into the pinned staging bytes at ``offsets``.

    With a ``pool``, images of ``PARALLEL_FILL_BYTES`` or more are cut into ``threads`` row
    ranges copied at once (numpy's copy runs without the GIL); this thread copies one of them.
    ``bands`` (per image, ``cuda_resize.resize_row_band`` or None) leaves out the rows the resize
    kernel reads with zero weight only, as the ordinary path's staging does (``host_copy``).
    """
    if bands is not None and not invert and any(band is not None for band in bands):
        from trtdet.preprocess.host_copy import copy_pieces, plan_pieces

        copies = [(offset, host[offset : offset + image.size].reshape(image.shape), image)
                  for offset, image in zip(offsets, images, strict=True)]
        large = sum(image.nbytes for image in images) >= PARALLEL_FILL_BYTES
        use = pool if large and threads > 1 else None
        copy_pieces(plan_pieces(copies, threads if use is not None else 1, bands), use, lambda piece: None)
        return
    pieces = []
    for offset, image in zip(offsets, images, strict=True):
        target = host[offset : offset + image.size].reshape(image.shape)
        if invert:
            np.subtract(np.uint8(255), image, out=target)
        elif pool is None or threads < 2 or image.nbytes < PARALLEL_FILL_BYTES:
            np.copyto(target, image)
        else:
            rows = -(-image.shape[0] // threads)
            pieces += [(target[first : first + rows], image[first : first + rows]) for first in range(0, image.shape[0], rows)]
    if not pieces:
        return
    futures = [pool.submit(np.copyto, target, source) for target, source in pieces[1:]]
    try:
        np.copyto(*pieces[0])
    finally:
        for future in futures:  # every piece is written (or failed) before the caller goes on
            future.result()


def _same_detections(got: Sequence[Detections], want: Sequence[Detections]) -> str | None:
    """None when equal (boxes and scores within float32 noise), else what differs."""
    if len(got) != len(want):
        return f"{len(got)} results for {len(want)} images"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        if len(g) != len(w) or not np.array_equal(g.class_id, w.class_id):
            return f"image {k}: {len(g)} detections against {len(w)} from a direct run"
        if not (np.allclose(g.xyxy, w.xyxy, rtol=1e-5, atol=1e-3) and np.allclose(g.confidence, w.confidence, atol=1e-4)):
            return f"image {k}: boxes or scores differ from a direct run"
    return None


def _compare_outputs(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    for name, value in want.items():
        a, b = got[name].float(), value.float()
        error = float((a - b).abs().max()) if b.numel() else 0.0
        scale = float(b.abs().max()) if b.numel() else 0.0
        if not error <= 1e-3 * scale + 1e-3:
            return f"output {name!r} up to {error:.3g} off a direct run"
    return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        return default


class PipelineGraphs:
    """The captured pipelines of one detector; ``stage``/``launch``/``finish`` mirror the detector's phases.

    ``stage(images)`` returns None when the batch takes the ordinary path (see the module
    docstring); the caller then stages it as before. All calls come from the thread holding the
    detector's session, with the pipeline's stream current.
    """

    def __init__(
        self,
        preprocessor: Any,
        engine_call: Callable[[Any], dict[str, Any]],
        decoder: Any,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        capacity: int = DEFAULT_CAPACITY,
        capture_after: int = CAPTURE_AFTER,
    ) -> None:
        from trtdet.cuda.runtime import SIMULATOR
        from trtdet.io.pinned import is_pinned

        self.preprocessor = preprocessor
        self.engine_call = engine_call
        self.decoder = decoder
        self.max_batch = max_batch
        self.cache: LRU[GraphKey, Entry] = LRU(capacity)
        #: False turns the graphs off (batches take the ordinary path); set by the self-check.
        self.enabled = True
        #: Why the graphs are off (None while on).
        self.disabled_reason: str | None = None
        self._simulator = SIMULATOR
        self._pinned = (lambda array: False) if SIMULATOR else is_pinned
        self._dtype = str(preprocessor.dtype).replace("torch.", "")
        #: Sightings of keys not yet captured (``due``).
        self.capture_after = capture_after
        self._seen: LRU[GraphKey, int] = LRU(SEEN_KEYS)
        self._side: Any = None
        self._pool: Any = None
        #: Threads that copy a large image into staging together (this one included).
        self.copy_threads = max(1, _env_int("TRTDET_PIPELINE_GRAPH_COPY_THREADS", FILL_THREADS))
        self._pool_threads: Any = None

    # -- the phases ------------------------------------------------------------------------

    def key(self, images: Sequence[Any]) -> GraphKey | None:
        return graph_key(images, self._dtype, self.max_batch, self._pinned)

    def stage(self, images: Sequence[Any]) -> GraphStaged | None:
        """Copy a batch into a slot's pinned staging (capturing its key's graphs the first time)."""
        if not self.enabled or self._simulator:
            return None
        key = self.key(images)
        if key is None:
            return None
        entry = self.cache.get(key)
        if entry is None:
            if not self.due(key):
                return None
            entry = self._build(key, images)
            if entry is None:
                return None
        slot = entry.slots[entry.turn]
        if slot.pending:  # two batches of this key staged and not launched: the scheduler never does this
            return None
        entry.turn ^= 1
        # Its last replay has read the staging. (With two batches launched ahead, that batch is
        # finished -- its results read -- before this one is launched into the slot.)
        slot.wait()
        pinned = []
        copies_images, copies_offsets, copies_transforms = [], [], []
        transforms = entry.transforms if len(entry.transforms) == len(images) else [None] * len(images)
        for offset, image, transform in zip(entry.offsets, images, transforms, strict=True):
            if not key.uploads and self._pinned(image):
                pinned.append((offset, image))
            else:
                copies_images.append(image)
                copies_offsets.append(offset)
                copies_transforms.append((image, transform))
        _fill(slot.host.numpy(), copies_offsets, copies_images, pool=self._copy_pool(), threads=self.copy_threads,
              bands=[self._row_band(image, transform) for image, transform in copies_transforms])
        slot.pending = True
        return GraphStaged(entry, slot, pinned)

    def launch(self, staged: GraphStaged) -> GraphLaunched:
        """Replay the batch's graph on the current stream (one launch, plus pinned images' uploads before it)."""
        entry, slot = staged.entry, staged.slot
        if not slot.pending:
            raise RuntimeError("this batch was already launched or its staging was discarded")
        slot.pending = False
        if slot.busy:
            raise RuntimeError("the slot's previous batch was not finished: its results would be overwritten")
        if not entry.key.uploads:
            self._upload_outside(entry, slot, staged.pinned)
        slot.graph.replay()
        slot.done.record()
        slot.busy = True
        return GraphLaunched(slot, [image for _, image in staged.pinned])

    def finish(self, launched: GraphLaunched) -> list[Detections]:
        """Wait for the replay once and read the detections from pinned memory."""
        slot = launched.slot
        try:
            slot.wait()
        finally:
            slot.busy = False
            launched.keep.clear()
        return slot.decode.collect()

    def discard(self) -> None:
        """Forget staged and launched batches (after an error); their slots wait for the GPU before reuse."""
        for entry in self.cache.values():
            for slot in entry.slots:
                slot.pending = slot.busy = False

    def drop_input_size(self, size: tuple[int, int]) -> None:
        """Drop the graphs whose network input is ``size`` (H, W): the engine they recorded is going
        away (a per-shape engine evicted by ``BucketEngine``), and a replay would run freed memory."""
        for key in self.cache:  # a copy of the keys
            entry = self.cache.get(key)
            if entry is not None and tuple(int(d) for d in entry.input.shape[-2:]) == tuple(size):
                self.cache.pop(key)
                entry.release()

    def close(self) -> None:
        """Drop every graph and buffer (waits for replays still running)."""
        for entry in self.cache.clear():
            entry.release()
        if self._pool_threads is not None:
            self._pool_threads.shutdown(wait=True)
            self._pool_threads = None

    def _row_band(self, image: np.ndarray, transform: Any) -> Any:
        """The rows of ``image`` the resize kernel reads (None: all), as the ordinary path's staging skips them."""
        from trtdet.preprocess.cuda_resize import resize_row_band

        if transform is None or transform.resized is None or not getattr(self.preprocessor, "_skip_rows", False):
            return None
        return resize_row_band(image.shape[0], transform.resized[0])

    def _copy_pool(self) -> Any:
        if self.copy_threads < 2:
            return None
        if self._pool_threads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool_threads = ThreadPoolExecutor(max_workers=self.copy_threads - 1, thread_name_prefix="trtdet-graph-stage")
        return self._pool_threads

    def due(self, key: GraphKey) -> bool:
        """Count a sighting of ``key`` (not yet captured); True once it is worth capturing."""
        seen = (self._seen.get(key) or 0) + 1
        self._seen.put(key, seen)
        return seen >= self.capture_after

    def owns(self, staged: Any) -> bool:
        return isinstance(staged, GraphStaged)

    @property
    def nbytes(self) -> int:
        """Bytes the kept keys hold outside the shared pool (see ``Entry.nbytes``)."""
        return sum(entry.nbytes for entry in self.cache.values())

    # -- building --------------------------------------------------------------------------

    def _disable(self, reason: str) -> None:
        self.enabled = False
        self.disabled_reason = reason
        for entry in self.cache.clear():
            entry.release()
        warnings.warn(f"CUDA graphs off for this pipeline (engine graphs stay on): {reason}", stacklevel=3)

    def _build(self, key: GraphKey, images: Sequence[np.ndarray]) -> Entry | None:
        """Allocate, capture and self-check a key's two slots; None (graphs off, one warning) on failure."""
        try:
            entry = self._capture_entry(key, images)
        except Exception as exc:  # capture refused, a kernel that cannot be captured, a mismatch
            text = str(exc).strip().splitlines()
            self._disable(text[0] if text else type(exc).__name__)
            return None
        for dropped in self.cache.put(key, entry):
            dropped.release()
        return entry

    def allocate(self, key: GraphKey, images: Sequence[np.ndarray]) -> tuple[Entry, dict[str, Any]]:
        """A key's buffers and decode plans (on the current stream), and a direct run's engine outputs.

        The direct run warps the inverted images (the capture's warm-up data): its outputs give
        the decode plans their shapes.
        """
        from trtdet.preprocess.cuda import staging_layout
        from trtdet.preprocess.letterbox import batch_input_size

        pre = self.preprocessor
        transforms = pre.transforms(images)
        meta, offsets, meta_bytes = staging_layout([(h, w, 3) for h, w in key.shapes], transforms)
        device = pre.device
        total = meta_bytes + key.image_bytes
        pin = not self._simulator
        if self._simulator:
            dev = torch.zeros(total, dtype=torch.uint8)
        else:
            dev = torch.zeros(total, dtype=torch.uint8, device=device)
        dev[: meta.nbytes].copy_(torch.from_numpy(meta.reshape(-1).view(np.uint8)))
        h, w = batch_input_size(transforms, pre.input_size)
        shape = (key.batch, 3, h, w)
        network_input = torch.empty(shape, dtype=pre.dtype) if self._simulator else torch.empty(shape, dtype=pre.dtype, device=device)
        entry = Entry(key, list(transforms), offsets, meta_bytes, dev, network_input)
        hosts = [torch.empty(key.image_bytes, dtype=torch.uint8, pin_memory=pin) for _ in range(2)]
        _fill(hosts[0].numpy(), offsets, images, invert=True)
        outputs = self._direct(entry, hosts[0], None)
        plans = [self.decoder.graph_plan(outputs, entry.transforms) for _ in range(2)]
        entry.slots = [_Slot(host, plan) for host, plan in zip(hosts, plans, strict=True)]
        return entry, outputs

    def _direct(self, entry: Entry, host: Any, decode: Any) -> dict[str, Any]:
        """The steps a graph holds, queued on the current stream: upload, warp, engine, decode (when given)."""
        from trtdet.cuda.runtime import numba_stream

        entry.dev[entry.meta_bytes : entry.total].copy_(host, non_blocking=True)
        return self._after_upload(entry, decode, numba_stream(None))

    def _after_upload(self, entry: Entry, decode: Any, stream: Any) -> dict[str, Any]:
        key = entry.key
        self.preprocessor._run_kernel(entry.dev, entry.meta_bytes, entry.total, key.batch, entry.input, stream)
        outputs = self.engine_call(entry.input)
        if decode is not None:
            decode.launch(outputs)
        return outputs

    def direct_detections(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The detections of the steps a graph would hold, run directly on a fresh key's buffers
        (no capture: what the self-check compares a replay with; the simulator runs this too)."""
        key = self.key(images)
        if key is None:
            raise ValueError("this batch takes the ordinary path (empty, too large, or not HxWx3 uint8 arrays)")
        entry, _ = self.allocate(key, images)
        slot = entry.slots[0]
        _fill(slot.host.numpy(), entry.offsets, images)
        self._direct(entry, slot.host, slot.decode)
        if not self._simulator:
            torch.cuda.current_stream().synchronize()
        return slot.decode.collect()

    def _capture_entry(self, key: GraphKey, images: Sequence[np.ndarray]) -> Entry:
        from trtdet.cuda.runtime import numba_stream

        pipeline = torch.cuda.current_stream()
        if self._side is None:
            self._side = torch.cuda.Stream(device=pipeline.device)
            self._pool = torch.cuda.graph_pool_handle()
        side = self._side
        side.wait_stream(pipeline)  # nothing in flight shares the engine with the captures' runs
        try:
            with torch.cuda.stream(side):
                entry, _ = self.allocate(key, images)
                for slot in entry.slots:
                    self._capture_slot(entry, slot, images, side, numba_stream(side))
        finally:
            pipeline.wait_stream(side)
        return entry

    def _capture_slot(self, entry: Entry, slot: _Slot, images: Sequence[np.ndarray], side: Any, stream: Any) -> None:
        host = slot.host.numpy()
        _fill(host, entry.offsets, images, invert=True)
        for _ in range(WARMUP):
            self._direct(entry, slot.host, slot.decode)
        side.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads' CUDA work (another detector, a staging copy) does not void the capture.
        with torch.cuda.graph(graph, pool=self._pool, stream=side, capture_error_mode="thread_local"):
            if entry.key.uploads:
                entry.dev[entry.meta_bytes : entry.total].copy_(slot.host, non_blocking=True)
            captured = self._after_upload(entry, slot.decode, stream)
        side.synchronize()
        # Self-check: the real images, input and results poisoned, replayed, then run directly.
        _fill(host, entry.offsets, images)
        if not entry.key.uploads:
            entry.dev[entry.meta_bytes : entry.total].copy_(slot.host, non_blocking=True)
        entry.input.fill_(float("nan"))
        slot.decode.poison()
        graph.replay()
        side.synchronize()
        replayed_input = entry.input.clone()
        replayed_outputs = {name: value.clone() for name, value in captured.items()}
        try:
            replayed = slot.decode.collect()
        except RuntimeError as exc:
            raise GraphMismatch(f"replaying the captured pipeline: {exc}") from None
        entry.input.fill_(float("nan"))
        slot.decode.poison()
        direct_outputs = self._direct(entry, slot.host, slot.decode)
        side.synchronize()
        direct = slot.decode.collect()
        problem = None
        if not torch.equal(replayed_input, entry.input):
            problem = "the network input differs from a direct run's"
        problem = problem or _compare_outputs(replayed_outputs, direct_outputs) or _same_detections(replayed, direct)
        if problem:
            raise GraphMismatch(f"replaying the captured pipeline: {problem}")
        slot.graph = graph
        slot.done = torch.cuda.Event()

    def _upload_outside(self, entry: Entry, slot: _Slot, pinned: list[tuple[int, np.ndarray]]) -> None:
        """Queue the uploads a graph without them needs: pinned images from where they are, the rest from staging."""
        start = entry.meta_bytes
        from_pinned = {offset for offset, _ in pinned}
        for offset, (h, w) in zip(entry.offsets, entry.key.shapes, strict=True):
            size = h * w * 3
            if offset in from_pinned:
                continue
            entry.dev[start + offset : start + offset + size].copy_(slot.host[offset : offset + size], non_blocking=True)
        for offset, image in pinned:
            source = torch.from_numpy(image).reshape(-1)
            entry.dev[start + offset : start + offset + source.numel()].copy_(source, non_blocking=True)


def for_pipeline(preprocessor: Any, engine: Any, decoder: Any) -> PipelineGraphs | None:
    """The pipeline graphs for these stages, or None when they cannot have them.

    Needs the CUDA letterbox preprocessor, an engine with graphs on that can run its network
    directly (``ungraphed_call``: AOTInductor packages; TensorRT keeps its own engine graph), a
    decoder with ``graph_plan`` (the CUDA YOLO, fixed-set and CenterNet decoders, also behind a
    class filter), and ``TRTDET_PIPELINE_GRAPHS`` not ``0``. ``TRTDET_PIPELINE_GRAPH_BATCH`` sets
    the largest batch (default 4), ``TRTDET_PIPELINE_GRAPH_KEYS`` the keys kept (default 8).
    """
    if os.environ.get("TRTDET_PIPELINE_GRAPHS", "1").strip() == "0":
        return None
    engine_call = getattr(engine, "ungraphed_call", None)
    if engine_call is None or not getattr(engine, "cuda_graphs", False):
        return None
    if not hasattr(decoder, "graph_plan") or not hasattr(preprocessor, "_run_kernel"):
        return None
    graphs = PipelineGraphs(
        preprocessor, engine_call, decoder,
        max_batch=max(1, _env_int("TRTDET_PIPELINE_GRAPH_BATCH", DEFAULT_MAX_BATCH)),
        capacity=max(1, _env_int("TRTDET_PIPELINE_GRAPH_KEYS", DEFAULT_CAPACITY)),
    )
    listeners = getattr(engine, "eviction_listeners", None)  # per-shape engines (rect): see BucketEngine
    if listeners is not None:
        listeners.append(graphs.drop_input_size)
    return graphs
