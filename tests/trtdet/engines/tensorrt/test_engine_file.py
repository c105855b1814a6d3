"""The engine file format: length-prefixed JSON metadata, then the plan; malformed files fail clearly."""

from __future__ import annotations

import json
import struct

import pytest

from trtdet.contracts.artifact import (
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
    del header["dynamic_input_size"]  # older headers: a fixed input size
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


def _with_header(text: str) -> bytes:
    header = text.encode("utf-8")
    return struct.pack("<I", len(header)) + header + PLAN


def _valid_header(make_metadata, **changes) -> str:
    data = make_metadata().to_json_dict()
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "header",
    [
        "[" * 100_000 + "]" * 100_000,  # RecursionError inside json
        '{"a": ' * 50_000 + "1" + "}" * 50_000,
    ],
    ids=["deep-list", "deep-object"],
)
def test_deeply_nested_headers_are_one_model_error(header):
    with pytest.raises(ModelError, match=r"^bad\.engine: not a trtdet engine \(metadata header is not JSON"):
        decode_artifact(_with_header(header), "bad.engine")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_batch": "@Infinity"}, "Infinity is not a valid metadata value"),
        ({"max_batch": "@NaN"}, "NaN is not a valid metadata value"),
        ({"max_batch": "@1e400"}, "malformed engine metadata: cannot convert float infinity"),  # overflows to inf
        ({"input_size": 640}, "malformed engine metadata"),
        ({"build_options": [1, 2, 3]}, "malformed engine metadata"),
        ({"plugins": [5]}, "malformed engine metadata"),
        ({"dynamic_input_size": "yes"}, "malformed engine metadata: expected true or false, got 'yes'"),
    ],
)
def test_malformed_header_values_are_one_model_error(make_metadata, changes, message):
    """``"@text"`` values are written into the JSON as raw text (literals json.dumps never writes)."""
    raw = {key: f'"{key}-raw"' for key, value in changes.items() if isinstance(value, str) and value.startswith("@")}
    text = _valid_header(make_metadata, **{k: (f"{k}-raw" if k in raw else v) for k, v in changes.items()})
    for key, placeholder in raw.items():
        text = text.replace(placeholder, changes[key][1:])
    with pytest.raises(ModelError, match=message) as info:
        decode_artifact(_with_header(text), "bad.engine")
    assert str(info.value).startswith("bad.engine: ") and "\n" not in str(info.value)


def test_an_old_style_header_with_a_malformed_extra_is_one_model_error(make_metadata):
    data = make_metadata().to_json_dict()
    data["trt_flavour"] = data.pop("runtime")
    data["extra"] = "not a mapping"
    with pytest.raises(ModelError, match="^bad.engine: malformed engine metadata"):
        decode_artifact(_with_header(json.dumps(data)), "bad.engine")


def test_a_malformed_cached_header_is_a_cache_miss(tmp_path, make_metadata, sample_plan):
    from trtdet.engines.artifact_cache import ArtifactCache

    cache = ArtifactCache(tmp_path)
    stored = cache.store(make_metadata(), sample_plan)
    stored.write_bytes(_with_header("[" * 100_000 + "]" * 100_000))
    assert cache.lookup(make_metadata().key()) is None
    stored.write_bytes(_with_header(_valid_header(make_metadata).replace('"max_batch": 4', '"max_batch": Infinity')))
    assert cache.lookup(make_metadata().key()) is None
