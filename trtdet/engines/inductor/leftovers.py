"""Finding and removing the folders package loads leave in the temporary folder, ours only.

A load makes two: trtdet's private copy of the package (``trtdet-package-XXXX``, removed when
the load ends) and torch's unpack folder (``aotinductor_XXXXXX/<tag>``, where ``<tag>`` is
``trtdet-<pid>-<random>``), which a loaded model needs as long as it lives (CUDA kernels are
read from it lazily) and torch removes with the model. A process killed with SIGKILL removes
neither, so each load first removes those of dead processes: an unpack folder is in use exactly
while its lock file (``<tag>/.trtdet-in-use``, put in place already locked) is locked by a live
process -- ``flock`` locks die with their process, in any PID namespace -- and a copy folder
or an unpack folder never locked (killed mid-load) is left to live a day before it counts as stale.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

TAG_PREFIX = "trtdet-"
COPY_PREFIX = "trtdet-package-"
LOCK_NAME = ".trtdet-in-use"
#: Unlocked leftovers younger than this may belong to a load in progress.
STALE_AFTER_S = 24 * 3600
_TAG = re.compile(r"^trtdet-\d+-[0-9a-f]{12}$")


def temp_roots() -> list[Path]:
    """Folders torch's loader may unpack into: ``std::filesystem::temp_directory_path()`` (libstdc++ reads
    ``TMPDIR``, ``TMP``, ``TEMP``, ``TEMPDIR``, else ``/tmp``) and, for older torch, ``/tmp`` and Python's."""
    roots: list[Path] = []
    for name in ("TMPDIR", "TMP", "TEMP", "TEMPDIR"):
        if os.environ.get(name):
            roots.append(Path(os.environ[name]))
            break
    roots += [Path(tempfile.gettempdir()), Path("/tmp")]
    return list(dict.fromkeys(roots))


def _own_folder(folder: Path) -> os.stat_result | None:
    """The folder's stat when it is a real folder (not a link) of this user, else None."""
    try:
        info = folder.lstat()
    except OSError:
        return None
    return info if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() else None


def unpack_folders(tag: str) -> list[Path]:
    """torch's unpack folders of the copy whose top folder is ``tag``, oldest first.

    A folder counts only when it is a real folder of this user holding nothing but ``tag``.
    """
    found: dict[Path, int] = {}
    for root in temp_roots():
        for marker in root.glob(f"*/{tag}"):
            info = _own_folder(marker.parent)
            try:
                if info is None or os.listdir(marker.parent) != [tag]:
                    continue
            except OSError:
                continue
            found[marker.parent] = info.st_mtime_ns
    return sorted(found, key=found.__getitem__)


def hold(folder: Path) -> int | None:
    """Mark ``folder`` in use by this process: a lock file, locked before it takes its name. The
    descriptor (close it to release) or None where the file system has no ``flock``."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no marking, and no sweeping either
        return None
    pending = folder / f"{LOCK_NAME}.{os.getpid()}"
    try:
        handle = os.open(pending, os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)
        os.replace(pending, folder / LOCK_NAME)
    except OSError:
        os.close(handle)
        pending.unlink(missing_ok=True)
        return None
    return handle


def _unlocked(lock: Path) -> bool:
    """Whether no process holds ``lock`` (False when that cannot be told)."""
    import fcntl

    try:
        handle = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(handle)
    return True


def remove_stale(now: float | None = None) -> list[Path]:
    """Remove the copy and unpack folders killed trtdet processes left; returns what was removed."""
    try:
        import fcntl  # noqa: F401 - without flock nothing can be told stale
    except ImportError:
        return []
    now = time.time() if now is None else now
    removed: list[Path] = []
    for root in temp_roots():
        for marker in root.glob(f"*/{TAG_PREFIX}*"):
            folder = marker.parent
            info = _own_folder(folder)
            if info is None or not _TAG.match(marker.name):
                continue
            try:
                if os.listdir(folder) != [marker.name]:
                    continue
            except OSError:
                continue
            lock = marker / LOCK_NAME
            if (_unlocked(lock) if lock.exists() else now - info.st_mtime > STALE_AFTER_S):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        for copy in root.glob(f"{COPY_PREFIX}*"):
            info = _own_folder(copy)
            if info is not None and now - info.st_mtime > STALE_AFTER_S:
                shutil.rmtree(copy, ignore_errors=True)
                removed.append(copy)
    return removed
