"""The artifact cache: built engine artifacts keyed by their metadata key fields, plus their sources.

Runtime-neutral: every backend that compiles artifacts (TensorRT engines, AOTInductor
packages) shares it, each with its own file suffix. Layout under the cache dir
(``$TRTDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/trtdet``, else ``~/.cache/trtdet``)::

    engines/<key digest><suffix>    artifact files (trtdet format: header JSON + payload)
    onnx/<sha256>.onnx              the source of each cached artifact (by the source's own
                                    suffix), to rebuild it when an artifact no longer fits the
                                    installed runtime or GPU

A backend may keep its own files under ``root`` too (TensorRT: ``timing/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtdet.cache import cache_dir, file_sha256
from trtdet.contracts.artifact import ArtifactMetadata, read_metadata, write_artifact
from trtdet.errors import ModelError

__all__ = ["ArtifactCache", "cache_dir", "file_sha256", "key_digest"]


def copy_atomically(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so that ``target`` is either absent or complete (temp file, rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def key_digest(key: dict[str, Any]) -> str:
    """A stable file name for a cache key (sha256 of its canonical JSON)."""
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class ArtifactCache:
    """Artifacts and their source files in a cache directory.

    ``suffix`` names the artifact files (``.engine`` for TensorRT plans, ``.pt2`` for
    AOTInductor packages), ``reader`` how to read their metadata; ``root`` defaults to ``trtdet.cache.cache_dir()``.
    """

    def __init__(
        self,
        root: Path | None = None,
        suffix: str = ".engine",
        reader: Callable[[Path], ArtifactMetadata] = read_metadata,
    ) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)  # builds stage their files inside it
        self.suffix = suffix
        #: Reads an artifact's metadata (AOTInductor packages keep it inside their zip).
        self.reader = reader

    def artifact_path(self, key: dict[str, Any]) -> Path:
        return self.root / "engines" / f"{key_digest(key)}{self.suffix}"

    def lookup(self, key: dict[str, Any]) -> Path | None:
        """The cached artifact for ``key``, or None (an unreadable entry counts as a miss)."""
        path = self.artifact_path(key)
        if not path.is_file():
            return None
        try:
            metadata = self.reader(path)
        except ModelError:
            return None
        return path if metadata.key() == key else None

    def store(self, metadata: ArtifactMetadata, payload: bytes) -> Path:
        return write_artifact(self.artifact_path(metadata.key()), metadata, payload)

    def source_path(self, sha256: str, suffix: str = ".onnx") -> Path:
        return self.root / suffix.lstrip(".") / f"{sha256}{suffix}"

    def keep_source(self, source: Path, sha256: str) -> Path:
        """Keep a copy of the source file so the artifact can be rebuilt for another runtime/GPU."""
        target = self.source_path(sha256, Path(source).suffix or ".onnx")
        if target.is_file():
            return target
        return copy_atomically(source, target)

    def cached_source(self, sha256: str, suffix: str = ".onnx") -> Path | None:
        path = self.source_path(sha256, suffix)
        return path if path.is_file() else None
