"""The trtdet engine file: ``<u32 little-endian N><N bytes UTF-8 JSON metadata><serialized plan>``.

The metadata makes an engine self-describing, so ``trtdet run --engine F`` needs nothing else:
model name, class names, input size, precision, TensorRT flavour and version, compute
capability (``"aot"`` for TensorRT-RTX's ahead-of-time builds), source ONNX sha256, max batch,
DCN lowering and trtdet version (the cache key), plus the I/O tensors and required plugins.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trtdet.errors import ModelError

_LENGTH = struct.Struct("<I")
#: Bound on the header so a random file is not read as a giant length.
MAX_METADATA_BYTES = 16 * 1024 * 1024

#: The metadata fields an engine cache entry is keyed by (an engine is reusable iff all match).
KEY_FIELDS: tuple[str, ...] = (
    "model",
    "names",
    "input_size",
    "precision",
    "trt_flavour",
    "trt_version",
    "compute_capability",
    "onnx_sha256",
    "max_batch",
    "dcn",
    "trtdet_version",
)


@dataclass(frozen=True)
class TensorInfo:
    """An engine I/O tensor: name, shape (-1 for dynamic dims) and dtype name (``float32``...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class RequiredPlugin:
    """A TensorRT plugin the plan references and the Python package that registers its creator."""

    name: str
    version: str
    namespace: str
    package: str


@dataclass(frozen=True)
class EngineMetadata:
    """What an engine file says about itself (the header JSON)."""

    model: str
    names: tuple[str, ...]
    input_size: tuple[int, int]
    precision: str
    trt_flavour: str
    trt_version: str
    compute_capability: str
    onnx_sha256: str
    max_batch: int
    dcn: str | None
    trtdet_version: str
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    plugins: tuple[RequiredPlugin, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def key(self) -> dict[str, Any]:
        """The cache key fields, JSON-ready."""
        data = self.to_json_dict()
        return {name: data[name] for name in KEY_FIELDS}

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["names"] = list(self.names)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], source: str) -> EngineMetadata:
        missing = [name for name in KEY_FIELDS if name not in data]
        if missing:
            raise ModelError(f"{source}: engine metadata lacks {', '.join(missing)}")
        try:
            return cls(
                model=str(data["model"]),
                names=tuple(str(n) for n in data["names"]),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                precision=str(data["precision"]),
                trt_flavour=str(data["trt_flavour"]),
                trt_version=str(data["trt_version"]),
                compute_capability=str(data["compute_capability"]),
                onnx_sha256=str(data["onnx_sha256"]),
                max_batch=int(data["max_batch"]),
                dcn=None if data["dcn"] is None else str(data["dcn"]),
                trtdet_version=str(data["trtdet_version"]),
                inputs=tuple(_tensor(t) for t in data.get("inputs", ())),
                outputs=tuple(_tensor(t) for t in data.get("outputs", ())),
                plugins=tuple(RequiredPlugin(**p) for p in data.get("plugins", ())),
                extra=dict(data.get("extra", {})),
            )
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"{source}: malformed engine metadata: {exc}") from exc

    def as_strings(self) -> dict[str, str]:
        """The ``Engine.metadata`` view: every field as a string, ``names`` as a JSON list."""
        return {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in self.to_json_dict().items()
        }


def _tensor(data: dict[str, Any]) -> TensorInfo:
    return TensorInfo(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))


def encode_engine(metadata: EngineMetadata, plan: bytes) -> bytes:
    """The bytes of an engine file."""
    header = json.dumps(metadata.to_json_dict(), sort_keys=True).encode("utf-8")
    return _LENGTH.pack(len(header)) + header + bytes(plan)


def write_engine(path: Path, metadata: EngineMetadata, plan: bytes) -> Path:
    """Write an engine file atomically (a crash never leaves a truncated engine under ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode_engine(metadata, plan))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _parse_header(data: bytes, total_size: int, source: str) -> tuple[EngineMetadata, int]:
    """Metadata from the start of an engine file and the offset where the plan begins."""
    if len(data) < _LENGTH.size:
        raise ModelError(f"{source}: not a trtdet engine (file is {total_size} bytes, truncated or empty)")
    (length,) = _LENGTH.unpack_from(data)
    if length == 0 or length > MAX_METADATA_BYTES:
        raise ModelError(
            f"{source}: not a trtdet engine (no metadata header; a plain TensorRT plan? "
            "rebuild it with `trtdet build`)"
        )
    if _LENGTH.size + length > len(data):
        raise ModelError(f"{source}: truncated engine (header says {length} metadata bytes, file has fewer)")
    try:
        header = json.loads(data[_LENGTH.size : _LENGTH.size + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{source}: not a trtdet engine (metadata header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{source}: not a trtdet engine (metadata header is not a JSON object)")
    return EngineMetadata.from_json_dict(header, source), _LENGTH.size + length


def decode_engine(data: bytes, source: str) -> tuple[EngineMetadata, bytes]:
    """Split engine file bytes into metadata and plan; ``ModelError`` naming ``source`` if malformed."""
    metadata, start = _parse_header(data, len(data), source)
    plan = data[start:]
    expected = metadata.extra.get("plan_bytes")
    if not plan:
        raise ModelError(f"{source}: truncated engine (metadata present, serialized plan missing)")
    if isinstance(expected, int) and expected != len(plan):
        raise ModelError(
            f"{source}: truncated or corrupt engine (plan is {len(plan)} bytes, expected {expected})"
        )
    return metadata, plan


def read_engine(path: Path) -> tuple[EngineMetadata, bytes]:
    """Read an engine file written by ``write_engine``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: engine file not found")
    return decode_engine(path.read_bytes(), str(path))


def read_metadata(path: Path) -> EngineMetadata:
    """Only the header of an engine file (cheap: the plan is not read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: engine file not found")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(_LENGTH.size)
        length = _LENGTH.unpack(prefix)[0] if len(prefix) == _LENGTH.size else 0
        data = prefix + handle.read(min(length, MAX_METADATA_BYTES))
    return _parse_header(data, size, str(path))[0]
