"""The trtdet AOTInductor package: a standard ``.pt2`` archive plus trtdet's metadata inside it.

``torch._inductor.aoti_compile_and_package`` writes a zip archive whose entries all sit under
one top folder; trtdet adds ``<top>/extra/trtdet.json`` (the same metadata a TensorRT engine
header carries), so the file stays loadable by ``torch._inductor.aoti_load_package`` alone and
``trtdet run --engine F.pt2`` needs nothing else. Writes are atomic: a package appears under
its final name only once compiled, described and checked. Reading the metadata checks the
archive's member names, kinds and sizes first (``trtdet.engines.inductor.unpack``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from trtdet.contracts.artifact import ArtifactMetadata
from trtdet.errors import ModelError

from .unpack import check_archive, checked_members

__all__ = ["METADATA_ENTRY", "check_archive", "is_package", "read_package_metadata", "write_package_metadata"]

METADATA_ENTRY = "extra/trtdet.json"
_ZIP_MAGIC = b"PK\x03\x04"
#: Bound on the metadata entry, so a hostile archive cannot make trtdet read gigabytes.
MAX_METADATA_BYTES = 16 * 1024 * 1024


def is_package(path: Path) -> bool:
    """Whether ``path`` starts like a zip archive (an AOTInductor ``.pt2``), not a TensorRT engine."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def _top_folder(archive: zipfile.ZipFile, source: str) -> str:
    names = archive.namelist()
    if not names or "/" not in names[0]:
        raise ModelError(f"{source}: not an AOTInductor package (no archive folder inside the zip)")
    return names[0].split("/", 1)[0]


def write_package_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Add (or replace) trtdet's metadata entry in the package at ``path``, in place."""
    with zipfile.ZipFile(path, "a") as archive:
        entry = f"{_top_folder(archive, str(path))}/{METADATA_ENTRY}"
        if entry in archive.namelist():
            raise ModelError(f"{path}: already has trtdet metadata")
        archive.writestr(entry, json.dumps(metadata, sort_keys=True))


def read_package_metadata(path: Path) -> ArtifactMetadata:
    """trtdet's metadata of the package at ``path``; ``ModelError`` naming the file if unusable."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ModelError(f"{source}: package file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            entry = f"{_top_folder(archive, source)}/{METADATA_ENTRY}"
            checked_members(archive, source)  # names, kinds and sizes, before anything else is read
            try:
                info = archive.getinfo(entry)
            except KeyError:
                raise ModelError(
                    f"{source}: an AOTInductor package without trtdet metadata; build it with "
                    "`trtdet build --backend inductor`"
                ) from None
            if info.file_size > MAX_METADATA_BYTES:
                raise ModelError(f"{source}: trtdet metadata entry is {info.file_size} bytes, more than a header holds")
            raw = archive.read(entry)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ModelError(f"{source}: corrupt or truncated AOTInductor package ({exc})") from exc
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{source}: trtdet metadata in the package is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{source}: trtdet metadata in the package is not a JSON object")
    return ArtifactMetadata.from_json_dict(data, source)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
