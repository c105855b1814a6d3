"""``trtdet batch``: detect on many images with Ray Data, writing one record per input, resumably.

list inputs (driver) -> read + decode (CPU tasks) -> ``Detect`` in an actor pool (one detector
per actor) -> JSONL or Parquet shards under the output directory (``trtdet.ray.shards``).

Resume: the ``source`` of every record in complete shards already there is skipped. A shard of
ours that cannot be read whole (the run was killed while writing it) is deleted first, so its
inputs are done again and none appears twice. Files ``trtdet batch`` did not write are never
read, changed or deleted; the run says it left them alone.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trtdet.errors import UsageError
from trtdet.options import DetectorOptions
from trtdet.ray.shards import FORMATS, done_sources, filesystem, list_output, read_shard, shard_names

#: The most CPUs a reading task asks for (it decodes one batch of images on one thread).
READ_CPUS = 1.0
#: The least CPU share left to reading when ``--cpus-per-worker`` is given: below it, reading
#: tasks would wait behind the detectors for ever.
MIN_READ_CPUS = 0.05


@dataclass(frozen=True)
class BatchJob:
    """What ``trtdet batch`` was asked to do (each field is the CLI flag of the same name)."""

    model: str
    options: DetectorOptions
    sources: Sequence[str]
    output: str
    address: str | None = None
    workers: int = 1
    gpus_per_worker: float | None = None
    #: None: up to 1 CPU per worker, shared so reading keeps some (``plan_cpus``).
    cpus_per_worker: float | None = None
    file_format: str = "jsonl"
    shard_size: int = 256
    annotate: bool = False
    quiet: bool = False
    verbose: bool = False

    def check(self) -> None:
        """One-line ``UsageError`` for values no run can use (before Ray starts)."""
        if self.file_format not in FORMATS:
            raise UsageError(f"--format: expected jsonl or parquet, got {self.file_format!r}")
        if self.workers < 1 or self.shard_size < 1:
            raise UsageError("--workers and --shard-size must be >= 1")

    @property
    def target(self) -> str:
        """The output as Ray Data writes to it (local paths made absolute)."""
        return self.output if "://" in self.output else filesystem(self.output)[1]


@dataclass
class BatchSummary:
    """What a run did: inputs listed, skipped (done before), written now, failed now, and the rate."""

    inputs: int
    skipped: int
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: Records written now with a ``warning`` (e.g. corrupt JPEG data that still decoded).
    warnings: list[str] = field(default_factory=list)
    removed_shards: list[str] = field(default_factory=list)
    failed_before: int = 0
    #: Files of the sources' folders and globs that are not images or videos (as ``trtdet run`` counts them).
    skipped_files: int = 0
    #: Files in the output directory that trtdet batch did not write: left alone.
    left_alone: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        earlier = f" ({self.failed_before} of them failed)" if self.failed_before else ""
        skipped = f", {self.skipped_files} file(s) skipped (not an image or video)" if self.skipped_files else ""
        return (
            f"{self.inputs} inputs: {self.skipped} already done{earlier}, {self.written} written now "
            f"({self.failed} failed){skipped}, {self.images_per_second:.1f} images/s"
        )


def plan_cpus(total: float, workers: int, per_worker: float | None) -> tuple[float, float]:
    """``(CPUs per detector, CPUs per reading task)`` on a cluster of ``total`` CPUs.

    Not given, each of the ``workers`` detectors takes up to one CPU and reading an equal
    share: ``--workers 2`` on 2 CPUs runs with 2/3 CPU each. Given, the detectors take what
    was asked and reading what is left (up to one CPU); refused only when nothing is left.
    """
    if total <= 0:
        raise UsageError("the Ray cluster has no CPUs to read images on")
    if per_worker is None:
        share = min(READ_CPUS, total / (workers + 1))
        share = math.floor(share * 10_000) / 10_000  # Ray's resources have four decimals
        return share, share
    reading = min(READ_CPUS, total - workers * per_worker)
    if reading < MIN_READ_CPUS:
        raise UsageError(
            f"{workers} workers x {per_worker:g} CPUs leave none of the cluster's {total:g} CPUs "
            "for reading images: lower --workers or --cpus-per-worker (or leave it out to share the CPUs)"
        )
    return per_worker, reading


def _start(job: BatchJob, say: Callable[[str], None]) -> tuple[list[Any], BatchSummary]:
    """Check the job, list its inputs, read what earlier runs did: the inputs to do now and the summary so far."""
    from trtdet.plugins import get_model
    from trtdet.ray.cluster import import_ray, worker_resources
    from trtdet.ray.inputs import collect_inputs

    import_ray()  # without the [ray] extra: one line saying how to install it
    job.check()
    worker_resources(job.options.device, job.gpus_per_worker, job.cpus_per_worker)  # a bad device fails here
    get_model(job.model)  # an unknown model fails here, before Ray starts
    listing = collect_inputs(job.sources)
    if not listing.inputs:
        raise UsageError("no inputs: give --source DIR, GLOB, FILE or URI")
    done = done_sources(job.output, job.file_format)
    for path in done.removed:
        say(f"removed an incomplete shard from an interrupted run: {path}")
    if done.others:
        shown = ", ".join(done.others[:5]) + (f" and {len(done.others) - 5} more" if len(done.others) > 5 else "")
        say(f"left alone {len(done.others)} file(s) in --output that trtdet batch did not write: {shown}")
    todo = [item for item in listing.inputs if item.source not in done.failed]
    summary = BatchSummary(
        inputs=len(listing.inputs), skipped=len(listing.inputs) - len(todo), removed_shards=done.removed,
        failed_before=sum(done.failed.get(item.source, False) for item in listing.inputs),
        skipped_files=listing.skipped, left_alone=done.others,
    )
    return todo, summary


def _pipeline(ray: Any, job: BatchJob, todo: Sequence[Any]) -> Any:
    """The Ray Data pipeline: rows of sources -> read + decode -> ``Detect`` actors -> records."""
    from trtdet.ray.cluster import check_gpus, cluster_cpus, plain_options, worker_resources
    from trtdet.ray.detect import Detect
    from trtdet.ray.inputs import read_batch

    resources = worker_resources(job.options.device, job.gpus_per_worker, job.cpus_per_worker)
    check_gpus(ray, resources, job.workers, "workers")
    resources["num_cpus"], reading = plan_cpus(cluster_cpus(ray), job.workers, resources["num_cpus"])
    rows = [{"source": item.source, "error": item.error or ""} for item in todo]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / job.shard_size)))
    dataset = dataset.map_batches(read_batch, batch_size=max(1, min(job.options.batch * 2, job.shard_size)),
                                  num_cpus=reading)
    constructor = {"model": job.model, "options": plain_options(job.options),
                   "annotate": f"{job.output.rstrip('/')}/images" if job.annotate else None}
    return dataset.map_batches(Detect, fn_constructor_kwargs=constructor, batch_size=job.options.batch,
                               compute=ray.data.ActorPoolStrategy(size=job.workers), **resources)


def _write(dataset: Any, job: BatchJob) -> None:
    """Write the records as shards named by ``trtdet.ray.shards`` (appending: nothing there is replaced)."""
    from ray.data import SaveMode

    from trtdet.ray.records import jsonl_datasink

    names = shard_names(job.file_format)
    if job.file_format == "parquet":
        dataset.write_parquet(job.target, min_rows_per_file=job.shard_size, filename_provider=names,
                              mode=SaveMode.APPEND)
    else:
        dataset.write_datasink(jsonl_datasink(job.target, job.shard_size, names))


def _count_written(summary: BatchSummary, job: BatchJob, before: set[str]) -> None:
    """Tally the records of the shards this run wrote."""
    fs, root = filesystem(job.output)
    for path in sorted(set(list_output(fs, root, job.file_format).shards) - before):
        for record in read_shard(fs, path, job.file_format) or []:
            summary.written += 1
            if record.get("error"):
                summary.failed += 1
                summary.errors.append(str(record["error"]))
            elif record.get("warning"):
                summary.warnings.append(str(record["warning"]))


def show_progress(quiet: bool) -> bool:
    """Ray Data's progress bars: on a terminal only, so they never interleave with lines in a log."""
    return not quiet and sys.stderr.isatty()


def run_batch(job: BatchJob, say: Callable[[str], None] = lambda _message: None) -> BatchSummary:
    """Detect on every input of ``job`` and write the records under its output; the summary.

    Ray is joined at ``job.address`` or started locally (on loopback). ``job.workers`` detectors
    run in an actor pool, each asking for ``gpus_per_worker`` GPUs on CUDA (default 1) and its
    share of CPUs (``plan_cpus``).
    """
    from trtdet.ray.cluster import connect, quiet_ray_loggers

    todo, summary = _start(job, say)
    if not todo:
        return summary
    ray = connect(job.address, verbose=job.verbose)
    importlib.import_module("ray.data")  # sets its loggers' levels: quieten them after
    quiet_ray_loggers(job.verbose)
    ray.data.DataContext.get_current().enable_progress_bars = show_progress(job.quiet)
    dataset = _pipeline(ray, job, todo)
    fs, root = filesystem(job.output)
    fs.create_dir(root, recursive=True)
    before = set(list_output(fs, root, job.file_format).shards)
    started = time.perf_counter()
    _write(dataset, job)
    summary.seconds = time.perf_counter() - started
    _count_written(summary, job, before)
    return summary
