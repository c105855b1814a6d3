"""The engine cache: built engines keyed by their metadata key fields, plus their source ONNX.

Layout under the cache dir (``$TRTDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/trtdet``, else
``~/.cache/trtdet``)::

    engines/<key digest>.engine     engine files (trtdet format)
    onnx/<sha256>.onnx              the source ONNX of each cached engine, to rebuild it when
                                    an engine no longer fits the installed TensorRT or GPU
    timing/<flavour>-<version>.cache  TensorRT timing caches (full TensorRT only)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trtdet.cache import cache_dir, file_sha256
from trtdet.engines.tensorrt.engine_file import EngineMetadata, read_metadata, write_engine
from trtdet.errors import ModelError

__all__ = ["EngineCache", "cache_dir", "file_sha256", "key_digest"]


def key_digest(key: dict[str, Any]) -> str:
    """A stable file name for a cache key (sha256 of its canonical JSON)."""
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class EngineCache:
    """Engines and source ONNX files in a cache directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def engine_path(self, key: dict[str, Any]) -> Path:
        return self.root / "engines" / f"{key_digest(key)}.engine"

    def lookup(self, key: dict[str, Any]) -> Path | None:
        """The cached engine for ``key``, or None (an unreadable entry counts as a miss)."""
        path = self.engine_path(key)
        if not path.is_file():
            return None
        try:
            metadata = read_metadata(path)
        except ModelError:
            return None
        return path if metadata.key() == key else None

    def store(self, metadata: EngineMetadata, plan: bytes) -> Path:
        return write_engine(self.engine_path(metadata.key()), metadata, plan)

    def source_path(self, onnx_sha256: str) -> Path:
        return self.root / "onnx" / f"{onnx_sha256}.onnx"

    def keep_source(self, onnx_path: Path, onnx_sha256: str) -> Path:
        """Keep a copy of the source ONNX so the engine can be rebuilt for another TensorRT/GPU."""
        target = self.source_path(onnx_sha256)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".onnx.", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(onnx_path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def cached_source(self, onnx_sha256: str) -> Path | None:
        path = self.source_path(onnx_sha256)
        return path if path.is_file() else None

    def timing_cache_path(self, flavour: str, version: str) -> Path:
        return self.root / "timing" / f"{flavour}-{version}.cache"
