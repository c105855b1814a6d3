"""Engine artifacts: ``<u32 little-endian N><N bytes UTF-8 JSON metadata><payload>``.

One format for every kind of compiled engine a backend builds (TensorRT plans today,
AOTInductor packages next): the metadata makes an artifact self-describing, so a run needs
nothing else. Its key fields (``KEY_FIELDS``) are what the artifact cache is keyed by: model
name, class names, input size, precision, runtime and its version, compute capability
(``"aot"`` for portable ahead-of-time builds), GPU name, source sha256, max batch, the build
options plugins' build steps chose, the trtdet version, and whether the input's height and
width are dynamic (a TensorRT engine built for the rect letterbox: any H x W up to ``input_size``). The I/O tensors, required
runtime plugins and free-form extras ride along outside the key.

Headers written before the fields were runtime-neutral (``trt_flavour``, ``trt_version``,
``onnx_sha256``, and the one build step's choice as a top-level field) are still read, as
the same fields.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Mapping
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
    "runtime",
    "runtime_version",
    "compute_capability",
    "gpu_name",
    "source_sha256",
    "max_batch",
    "build_options",
    "trtdet_version",
    "dynamic_input_size",
)
#: Key fields headers of older trtdet versions may lack, and the value they meant.
_KEY_DEFAULTS: dict[str, Any] = {"dynamic_input_size": False}
#: Header fields of older trtdet versions and the fields they are now.
_OLD_NAMES = {"trt_flavour": "runtime", "trt_version": "runtime_version", "onnx_sha256": "source_sha256"}


@dataclass(frozen=True)
class TensorInfo:
    """An artifact's I/O tensor: name, shape (-1 for dynamic dims) and dtype name (``float32``...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class RequiredPlugin:
    """A runtime plugin (e.g. a TensorRT plugin creator) the payload references, and the Python
    package that registers it."""

    name: str
    version: str
    namespace: str
    package: str


@dataclass(frozen=True)
class ArtifactMetadata:
    """What an engine artifact says about itself (the header JSON).

    ``runtime`` names what runs the payload (``"tensorrt"``, ``"rtx"`` for TensorRT-RTX, ...)
    and ``runtime_version`` its version; ``compute_capability`` is the GPU's (``"9.0"``) or
    ``"aot"`` for portable builds, whose ``gpu_name`` is ``""``. ``build_options`` maps build
    step names to the choices made (e.g. ``{"lowering": "decomposed"}``); the core never
    interprets it. ``dynamic_input_size``: the payload takes any input height and width up to
    ``input_size`` (else exactly ``input_size``).
    """

    model: str
    names: tuple[str, ...]
    input_size: tuple[int, int]
    precision: str
    runtime: str
    runtime_version: str
    compute_capability: str
    gpu_name: str
    source_sha256: str
    max_batch: int
    trtdet_version: str
    build_options: Mapping[str, str] = field(default_factory=dict, hash=False)
    dynamic_input_size: bool = False
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
        data["build_options"] = dict(sorted(self.build_options.items()))
        data["names"] = list(self.names)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], source: str) -> ArtifactMetadata:
        try:
            data = _current_names(data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{source}: malformed engine metadata: {exc}") from exc
        missing = [name for name in KEY_FIELDS if name not in data and name not in _KEY_DEFAULTS]
        if missing:
            raise ModelError(f"{source}: engine metadata lacks {', '.join(missing)}")
        try:
            return cls(
                model=str(data["model"]),
                names=tuple(str(n) for n in data["names"]),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                precision=str(data["precision"]),
                runtime=str(data["runtime"]),
                runtime_version=str(data["runtime_version"]),
                compute_capability=str(data["compute_capability"]),
                gpu_name=str(data["gpu_name"]),
                source_sha256=str(data["source_sha256"]),
                max_batch=int(data["max_batch"]),
                trtdet_version=str(data["trtdet_version"]),
                build_options={str(k): str(v) for k, v in dict(data["build_options"]).items()},
                dynamic_input_size=_flag(data.get("dynamic_input_size", _KEY_DEFAULTS["dynamic_input_size"])),
                inputs=tuple(_tensor(t) for t in data.get("inputs", ())),
                outputs=tuple(_tensor(t) for t in data.get("outputs", ())),
                plugins=tuple(RequiredPlugin(**p) for p in data.get("plugins", ())),
                extra=dict(data.get("extra", {})),
            )
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
            raise ModelError(f"{source}: malformed engine metadata: {exc}") from exc

    def as_strings(self) -> dict[str, str]:
        """The ``Engine.metadata`` view: every field as a string, ``names`` as a JSON list."""
        return {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in self.to_json_dict().items()
        }


def _current_names(data: dict[str, Any]) -> dict[str, Any]:
    """An older header in today's field names.

    Older headers say ``trt_flavour``, ``trt_version``, ``onnx_sha256``, have no ``gpu_name``,
    and store a build step's choice as a top-level field of its own (null: not applied).
    """
    if "runtime" in data or "trt_flavour" not in data:
        return data
    data = {_OLD_NAMES.get(name, name): value for name, value in data.items()}
    known = {*KEY_FIELDS, "inputs", "outputs", "plugins", "extra"}
    steps = {name: data.pop(name) for name in [name for name in data if name not in known]}
    data.setdefault("build_options", {name: value for name, value in steps.items() if value is not None})
    data.setdefault("gpu_name", "")
    extra = dict(data.get("extra") or {})
    if "plan_bytes" in extra:
        extra.setdefault("payload_bytes", extra.pop("plan_bytes"))
    data["extra"] = extra
    return data


def _no_constant(name: str) -> Any:
    """JSON's non-standard NaN/Infinity have no place in a header (``int(inf)`` would overflow later)."""
    raise ValueError(f"{name} is not a valid metadata value")


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _tensor(data: dict[str, Any]) -> TensorInfo:
    return TensorInfo(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))


def encode_artifact(metadata: ArtifactMetadata, payload: bytes) -> bytes:
    """The bytes of an artifact file."""
    header = json.dumps(metadata.to_json_dict(), sort_keys=True).encode("utf-8")
    return _LENGTH.pack(len(header)) + header + bytes(payload)


def write_artifact(path: Path, metadata: ArtifactMetadata, payload: bytes) -> Path:
    """Write an artifact file atomically (a crash never leaves a truncated one under ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode_artifact(metadata, payload))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _parse_header(data: bytes, total_size: int, source: str) -> tuple[ArtifactMetadata, int]:
    """Metadata from the start of an artifact file and the offset where the payload begins."""
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
        header = json.loads(data[_LENGTH.size : _LENGTH.size + length].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting: RecursionError
        raise ModelError(f"{source}: not a trtdet engine (metadata header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{source}: not a trtdet engine (metadata header is not a JSON object)")
    return ArtifactMetadata.from_json_dict(header, source), _LENGTH.size + length


def decode_artifact(data: bytes, source: str) -> tuple[ArtifactMetadata, bytes]:
    """Split artifact file bytes into metadata and payload; ``ModelError`` naming ``source`` if malformed."""
    metadata, start = _parse_header(data, len(data), source)
    payload = data[start:]
    expected = metadata.extra.get("payload_bytes")
    if not payload:
        raise ModelError(f"{source}: truncated engine (metadata present, serialized plan missing)")
    if isinstance(expected, int) and expected != len(payload):
        raise ModelError(
            f"{source}: truncated or corrupt engine (plan is {len(payload)} bytes, expected {expected})"
        )
    return metadata, payload


def read_artifact(path: Path) -> tuple[ArtifactMetadata, bytes]:
    """Read an artifact file written by ``write_artifact``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: engine file not found")
    return decode_artifact(path.read_bytes(), str(path))


def read_metadata(path: Path) -> ArtifactMetadata:
    """Only the header of an artifact file (cheap: the payload is not read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: engine file not found")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(_LENGTH.size)
        length = _LENGTH.unpack(prefix)[0] if len(prefix) == _LENGTH.size else 0
        data = prefix + handle.read(min(length, MAX_METADATA_BYTES))
    return _parse_header(data, size, str(path))[0]
