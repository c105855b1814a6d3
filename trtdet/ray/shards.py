"""The record shards ``trtdet batch`` writes, recognised by construction: their names.

Every shard is named ``trtdet-records-<write id>_<task>.json`` (or ``...-<n>.parquet``), the
name ``ShardNames`` gives Ray Data when it writes. Only files named so are read for resuming,
and only they are ever deleted (when cut short by a crash). Any other file in the output
directory -- a user's notes, a table, another tool's JSON -- is left alone and reported once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtdet.errors import UsageError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import pyarrow.fs as pafs
else:
    pafs = lazy_import("pyarrow.fs")

#: File suffix of each ``--format``.
FORMATS = {"jsonl": ".json", "parquet": ".parquet"}
#: The start of every shard's name.
PREFIX = "trtdet-records-"
#: A shard's whole name: prefix, Ray Data's write id and task index, Parquet's file counter, suffix.
SHARD_NAME = re.compile(r"^trtdet-records-[0-9A-Za-z]+_\d{6,}(?:-\d+)?\.(?:json|parquet)$")


def is_shard_name(name: str) -> bool:
    """Whether a file name is one ``trtdet batch`` gives its shards."""
    return SHARD_NAME.match(name) is not None


def shard_names(file_format: str) -> Any:
    """A Ray Data ``FilenameProvider`` naming shards ``trtdet-records-<write id>_<task>`` (+ suffix)."""
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            stem = f"{PREFIX}{write_uuid}_{task_index:06}"
            # Parquet's writer appends "-<n>.parquet" itself; JSON lines get their suffix here.
            return stem if file_format == "parquet" else stem + FORMATS[file_format]

    return ShardNames(file_format="parquet" if file_format == "parquet" else "json")


def filesystem(output: str) -> tuple[Any, str]:
    """The pyarrow filesystem of ``output`` (a local path or a URI) and the path on it."""
    if "://" in output:
        return pafs.FileSystem.from_uri(output)
    return pafs.LocalFileSystem(), str(Path(output).resolve())


@dataclass
class OutputListing:
    """The files directly in an output directory: this format's shards, and everything else."""

    shards: list[str] = field(default_factory=list)
    #: Files ``trtdet batch`` did not write (or wrote in the other format): never touched.
    others: list[str] = field(default_factory=list)


def list_output(fs: Any, root: str, file_format: str) -> OutputListing:
    """What ``root`` holds (nothing when it does not exist); ``UsageError`` when it is a file."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return OutputListing()
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"--output {root}: exists and is not a directory")
    listing = OutputListing()
    suffix = FORMATS[file_format]
    for entry in sorted(fs.get_file_info(pafs.FileSelector(root, recursive=False)), key=lambda e: e.path):
        if entry.type != pafs.FileType.File:
            continue  # folders (annotated images/) are not records
        if is_shard_name(entry.base_name) and entry.base_name.endswith(suffix):
            listing.shards.append(entry.path)
        else:
            listing.others.append(entry.path)
    return listing


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("source"), str)


def read_shard(fs: Any, path: str, file_format: str) -> list[dict[str, Any]] | None:
    """The records of one shard, or None when it is not whole (cut short by a crash) or holds
    something that is not a record."""
    try:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            with fs.open_input_file(path) as handle:
                records = pq.read_table(handle, columns=["source", "error", "warning"]).to_pylist()
        else:
            with fs.open_input_stream(path) as handle:
                text = handle.read().decode("utf-8")
            if text and not text.endswith("\n"):
                return None
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except Exception:  # OSError, ValueError, UnicodeDecodeError, pyarrow's own errors: not whole
        return None
    return records if all(_is_record(r) for r in records) else None


@dataclass
class DoneSources:
    """What earlier runs recorded in an output directory."""

    #: Source -> whether its record has an error.
    failed: dict[str, bool] = field(default_factory=dict)
    #: Shards of ours that were not whole, deleted so their inputs are done again.
    removed: list[str] = field(default_factory=list)
    #: Files left alone: not written by trtdet batch (or in the other format).
    others: list[str] = field(default_factory=list)


def done_sources(output: str, file_format: str) -> DoneSources:
    """The sources already recorded under ``output``; our own incomplete shards are deleted."""
    fs, root = filesystem(output)
    listing = list_output(fs, root, file_format)
    done = DoneSources(others=listing.others)
    for path in listing.shards:
        records = read_shard(fs, path, file_format)
        if records is None:
            fs.delete_file(path)
            done.removed.append(path)
            continue
        done.failed.update((r["source"], bool(r.get("error"))) for r in records)
    return done
