"""The user cache directory (exports, engines) and content hashing for cache keys."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from trtdet.errors import UsageError


def cache_path() -> Path:
    """Where the cache is: ``$TRTDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/trtdet``, else ``~/.cache/trtdet``."""
    explicit = os.environ.get("TRTDET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trtdet"


def cache_dir() -> Path:
    """``cache_path()``, created if missing (``OSError`` when it cannot be)."""
    path = cache_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def unusable_cache(path: Path, exc: OSError, why: str) -> UsageError:
    """The one line for a cache folder that cannot be used: which path, what failed, what to do."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        problem = "it or a folder above it is a file, not a folder"
    else:
        problem = exc.strerror or str(exc)
    return UsageError(
        f"{path}: the trtdet cache cannot be used ({problem}); {why}: make it a writable folder or "
        "point TRTDET_CACHE_DIR at one"
    )


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
