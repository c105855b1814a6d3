"""The engine file format: length-prefixed JSON metadata, then the plan; malformed files fail clearly."""

from __future__ import annotations

import json
import struct

import pytest

from trtdet.engines.artifact import (
    KEY_FIELDS,
    decode_artifact,
    read_artifact,
    read_metadata,
    write_artifact,
)
from trtdet.errors import ModelError


def test_layout_is_u32_length_json_then_plan(tmp_path, make_metadata, sample_plan):
    path = write_artifact(tmp_path / "m.engine", make_metadata(), sample_plan)
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[:4])
    header = json.loads(data[4 : 4 + length].decode("utf-8"))
    assert data[4 + length :] == sample_plan
    assert header["model"] == "yolo" and header["names"] == ["person", "bicycle"]
    assert header["input_size"] == [640, 640] and header["compute_capability"] == "aot"
    assert header["runtime"] == "rtx" and header["source_sha256"] == "ab" * 32 and header["max_batch"] == 4


def test_round_trip(tmp_path, make_metadata, sample_plan):
    path = write_artifact(tmp_path / "m.engine", make_metadata(), sample_plan)
    read, plan = read_artifact(path)
    assert read == make_metadata() and plan == sample_plan
    assert read_metadata(path) == make_metadata()
    assert set(read.key()) == set(KEY_FIELDS)


def test_metadata_as_strings_carries_names_as_json_list(make_metadata):
    strings = make_metadata().as_strings()
    assert json.loads(strings["names"]) == ["person", "bicycle"]
    assert strings["model"] == "yolo"


PLAN = b"\x00plan" * 10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated or empty"),
        (b"\x01\x00", "truncated or empty"),
        (struct.pack("<I", 0) + PLAN, "no metadata header"),
        (b"\xff\xff\xff\x7f" + PLAN, "no metadata header"),
        (struct.pack("<I", 500) + b"{}", "truncated engine"),
        (struct.pack("<I", 5) + b"nope!" + PLAN, "not JSON"),
        (struct.pack("<I", 2) + b"[]" + PLAN, "not a JSON object"),
        (struct.pack("<I", 2) + b"{}" + PLAN, "lacks model"),
    ],
)
def test_malformed_files_name_the_problem(data, message):
    with pytest.raises(ModelError, match=message) as info:
        decode_artifact(data, "bad.engine")
    assert str(info.value).startswith("bad.engine: ")


def test_truncated_plan_is_detected(tmp_path, make_metadata, sample_plan):
    path = write_artifact(tmp_path / "m.engine", make_metadata(), sample_plan)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match="truncated or corrupt engine"):
        read_artifact(path)
    path.write_bytes(data[: len(data) - len(sample_plan)])
    with pytest.raises(ModelError, match="serialized plan missing"):
        read_artifact(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="engine file not found"):
        read_artifact(tmp_path / "absent.engine")


def test_headers_of_older_trtdet_versions_are_read_as_the_same_fields(tmp_path, make_metadata, sample_plan):
    new = make_metadata(build_options={"dcn": "decomposed"})
    header = new.to_json_dict()
    for old, current in (("trt_flavour", "runtime"), ("trt_version", "runtime_version"), ("onnx_sha256", "source_sha256")):
        header[old] = header.pop(current)
    header["dcn"] = header.pop("build_options")["dcn"]
    del header["gpu_name"]
    header["extra"] = {"plan_bytes": header["extra"].pop("payload_bytes")}
    data = json.dumps(header).encode()
    old_file = tmp_path / "old.engine"
    old_file.write_bytes(struct.pack("<I", len(data)) + data + sample_plan)
    read, plan = read_artifact(old_file)
    assert plan == sample_plan
    assert read == new and read.gpu_name == "" and read.build_options == {"dcn": "decomposed"}
    header["dcn"] = None
    data = json.dumps(header).encode()
    assert decode_artifact(struct.pack("<I", len(data)) + data + sample_plan, "o.engine")[0].build_options == {}
