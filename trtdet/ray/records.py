"""The records ``trtdet batch`` writes: ``trtdet run``'s JSON-lines schema, as Arrow.

One fixed Arrow schema, so every JSONL or Parquet shard has the same columns and types (an
all-empty ``detections`` batch is still a list of structs, not a list of nulls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

DETECTION_TYPE = pa.struct(
    [("box", pa.list_(pa.float64())), ("score", pa.float64()), ("class_id", pa.int64()), ("label", pa.string())]
)

RECORD_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("frame", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("detections", pa.list_(DETECTION_TYPE)),
        ("error", pa.string()),
        ("output", pa.string()),
        # Damaged data that still decoded (e.g. corrupt JPEG data): null for a clean input.
        ("warning", pa.string()),
        # Milliseconds per image of each stage (``trtdet.results.STAGES``): null for an input that did not run.
        ("speed", pa.struct([("preprocess", pa.float64()), ("inference", pa.float64()), ("postprocess", pa.float64())])),
    ]
)


def error_record(source: str, error: str) -> dict[str, Any]:
    """The record of an input that yielded no image."""
    return {"source": source, "frame": None, "width": None, "height": None, "detections": [], "error": error, "output": None,
            "warning": None, "speed": None}


def records_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """``records`` (dicts with the schema's fields) as a table of ``RECORD_SCHEMA``."""
    return pa.Table.from_pylist([{name: record.get(name) for name in RECORD_SCHEMA.names} for record in records],
                                schema=RECORD_SCHEMA)


def json_line(record: dict[str, Any]) -> str:
    """One record as ``trtdet run --json`` writes it (same separators, ``/`` unescaped)."""
    import json

    return json.dumps(record, separators=(", ", ": "))


def jsonl_datasink(path: str, rows_per_file: int, filename_provider: Any = None) -> Any:
    """A Ray Data datasink writing JSON lines shards (``.json``) in ``trtdet run``'s format.

    Ray's own ``write_json`` goes through pandas, which escapes every ``/`` in source names.
    It appends: files already under ``path`` are never replaced.
    """
    from ray.data import SaveMode
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        def write_block_to_file(self, block: Any, file: Any) -> None:
            lines = "".join(json_line(record) + "\n" for record in block.to_arrow().to_pylist())
            file.write(lines.encode("utf-8"))

    return JsonLinesDatasink(path, min_rows_per_file=rows_per_file, file_format="json",
                             filename_provider=filename_provider, mode=SaveMode.APPEND)
