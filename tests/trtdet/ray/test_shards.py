"""``trtdet batch`` recognises its own shards by their names and never touches other files in --output."""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from trtdet.ray.shards import done_sources, is_shard_name, shard_names


def _record(source: str, error: str | None = None) -> str:
    return json.dumps({"source": source, "frame": None, "width": 4, "height": 3, "detections": [], "error": error,
                       "output": None, "warning": None}) + "\n"


def test_shard_names_are_recognised_and_nothing_else_is():
    write_id = uuid.uuid4().hex
    name = shard_names("jsonl").get_filename_for_task(write_id, 3)
    assert name == f"trtdet-records-{write_id}_000003.json" and is_shard_name(name)
    stem = shard_names("parquet").get_filename_for_task(write_id, 12)
    assert is_shard_name(f"{stem}-0.parquet")  # Ray's Parquet writer appends "-<n>.parquet"
    for other in ("notes.json", f"{write_id}_000000_000000.json", "trtdet-records-.json",
                  f"trtdet-records-{write_id}_000001.json.bak", f"x-trtdet-records-{write_id}_000001.json"):
        assert not is_shard_name(other), other


def test_files_it_did_not_write_are_left_alone_and_listed(tmp_path):
    write_id = uuid.uuid4().hex
    whole = tmp_path / f"trtdet-records-{write_id}_000000.json"
    whole.write_text(_record("a.jpg") + _record("b.jpg", "b.jpg: not a readable image"))
    cut = tmp_path / f"trtdet-records-{write_id}_000001.json"
    cut.write_text(_record("c.jpg") + '{"source": "d.j')  # killed while writing
    not_records = tmp_path / f"trtdet-records-{write_id}_000002.json"
    not_records.write_text('{"a": 1}\n')  # our name, but not records: done again
    foreign = {
        "notes.json": b"my notes, not JSON\n",
        "config.json": b'{"threshold": 0.5}\n',  # valid JSON, not a record
        "list.json": b"[1, 2, 3]\n",
        "cut.json": b'{"source": "e.jpg"',  # looks like a cut record, but not ours
    }
    for name, data in foreign.items():
        (tmp_path / name).write_bytes(data)
    table = tmp_path / "table.parquet"
    pq.write_table(pa.table({"path": ["x.jpg"], "score": [0.5]}), table)  # valid Parquet without "source"
    table_bytes = table.read_bytes()
    (tmp_path / "images").mkdir()  # annotated copies: a folder, not a record

    done = done_sources(str(tmp_path), "jsonl")
    assert done.failed == {"a.jpg": False, "b.jpg": True}
    assert sorted(done.removed) == sorted([str(cut), str(not_records)]) and not cut.exists() and not not_records.exists()
    assert sorted(done.others) == sorted(str(tmp_path / name) for name in [*foreign, "table.parquet"])
    for name, data in foreign.items():
        assert (tmp_path / name).read_bytes() == data
    assert table.read_bytes() == table_bytes and whole.exists()

    again = done_sources(str(tmp_path), "parquet")  # the other format's shards are not read, nor deleted
    assert again.failed == {} and again.removed == [] and str(whole) in again.others
