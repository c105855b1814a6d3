"""``trtdet batch``: detect on many images with Ray Data, writing one record per input, resumably.

list inputs (driver) -> read + decode (CPU tasks) -> ``Detect`` in an actor pool (one detector
per actor) -> JSONL or Parquet shards under the output directory.

Resume: the ``source`` of every record in complete shards already there is skipped. A shard
that cannot be read whole (the run was killed while writing it) is deleted first, so its
inputs are done again and none appears twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtdet.errors import UsageError
from trtdet.options import DetectorOptions

FORMATS = {"jsonl": ".json", "parquet": ".parquet"}


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

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        earlier = f" ({self.failed_before} of them failed)" if self.failed_before else ""
        return (
            f"{self.inputs} inputs: {self.skipped} already done{earlier}, {self.written} written now "
            f"({self.failed} failed), {self.images_per_second:.1f} images/s"
        )


def _filesystem(output: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in output:
        return pafs.FileSystem.from_uri(output)
    path = Path(output).resolve()
    return pafs.LocalFileSystem(), str(path)


def _shards(fs: Any, root: str, suffix: str) -> list[str]:
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"--output {root}: exists and is not a directory")
    found = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(f.path for f in found if f.type == pafs.FileType.File and f.path.endswith(suffix))


def _read_shard(fs: Any, path: str, file_format: str) -> list[dict[str, Any]] | None:
    """The records of one shard, or None when it is not complete (cut short by a crash)."""
    try:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            with fs.open_input_file(path) as handle:
                return pq.read_table(handle, columns=["source", "error"]).to_pylist()
        with fs.open_input_stream(path) as handle:
            text = handle.read().decode("utf-8")
        if text and not text.endswith("\n"):
            return None
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError, Exception):  # pyarrow's own errors subclass neither
        return None


def done_sources(output: str, file_format: str, removed: list[str] | None = None) -> dict[str, bool]:
    """Sources already recorded under ``output``, each with whether it failed; incomplete shards
    are deleted (and listed in ``removed``)."""
    fs, root = _filesystem(output)
    done: dict[str, bool] = {}
    for path in _shards(fs, root, FORMATS[file_format]):
        records = _read_shard(fs, path, file_format)
        if records is None:
            fs.delete_file(path)
            if removed is not None:
                removed.append(path)
            continue
        done.update((str(r["source"]), bool(r.get("error"))) for r in records)
    return done


def run_batch(
    model: str,
    options: DetectorOptions,
    sources: Sequence[str],
    output: str,
    *,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1.0,
    file_format: str = "jsonl",
    shard_size: int = 256,
    annotate: bool = False,
    quiet: bool = False,
    say: Callable[[str], None] = lambda _message: None,
) -> BatchSummary:
    """Detect on every input under ``sources`` and write the records under ``output``; the summary.

    Ray is joined at ``address`` or started locally. ``workers`` detectors run in an actor pool,
    each asking for ``gpus_per_worker`` GPUs on CUDA (default 1) and ``cpus_per_worker`` CPUs.
    """
    from trtdet.ray.cluster import check_capacity, connect, import_ray, plain_options, worker_resources

    import_ray()  # without the [ray] extra: one line saying how to install it
    from trtdet.ray.detect import Detect
    from trtdet.ray.inputs import list_inputs, read_batch
    from trtdet.ray.records import jsonl_datasink

    if file_format not in FORMATS:
        raise UsageError(f"--format: expected jsonl or parquet, got {file_format!r}")
    if workers < 1 or shard_size < 1:
        raise UsageError("--workers and --shard-size must be >= 1")
    resources = worker_resources(options.device, gpus_per_worker, cpus_per_worker)
    from trtdet.plugins import get_model

    get_model(model)  # an unknown model fails here, before Ray starts
    inputs = list_inputs(sources)
    if not inputs:
        raise UsageError("no inputs: give --source DIR, GLOB, FILE or URI")
    removed: list[str] = []
    done = done_sources(output, file_format, removed)
    for path in removed:
        say(f"removed an incomplete shard from an interrupted run: {path}")
    todo = [item for item in inputs if item.source not in done]
    summary = BatchSummary(inputs=len(inputs), skipped=len(inputs) - len(todo), removed_shards=removed,
                           failed_before=sum(done.get(item.source, False) for item in inputs))
    if not todo:
        return summary
    ray = connect(address)
    check_capacity(ray, resources, workers, "workers")
    if quiet:
        ray.data.DataContext.get_current().enable_progress_bars = False
    total_cpus = float(ray.cluster_resources().get("CPU", 0))
    if workers * resources["num_cpus"] >= total_cpus and total_cpus > 0:
        raise UsageError(
            f"{workers} workers x {resources['num_cpus']:g} CPUs leave none of the cluster's {total_cpus:g} CPUs "
            "for reading images: lower --workers or --cpus-per-worker"
        )
    fs, root = _filesystem(output)
    fs.create_dir(root, recursive=True)
    before = set(_shards(fs, root, FORMATS[file_format]))
    started = time.perf_counter()
    rows = [{"source": item.source, "error": item.error or ""} for item in todo]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / shard_size)))
    dataset = dataset.map_batches(read_batch, batch_size=max(1, min(options.batch * 2, shard_size)), num_cpus=1)
    constructor = {"model": model, "options": plain_options(options),
                   "annotate": f"{output.rstrip('/')}/images" if annotate else None}
    dataset = dataset.map_batches(
        Detect,
        fn_constructor_kwargs=constructor,
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=options.batch,
        **resources,
    )
    target = output if "://" in output else str(Path(output).resolve())
    if file_format == "parquet":
        dataset.write_parquet(target, min_rows_per_file=shard_size)
    else:
        dataset.write_datasink(jsonl_datasink(target, shard_size))
    summary.seconds = time.perf_counter() - started
    for path in sorted(set(_shards(fs, root, FORMATS[file_format])) - before):
        for record in _read_shard(fs, path, file_format) or []:
            summary.written += 1
            if record.get("error"):
                summary.failed += 1
                summary.errors.append(str(record["error"]))
            elif record.get("warning"):
                summary.warnings.append(str(record["warning"]))
    return summary
