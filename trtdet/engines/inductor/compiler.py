"""Which C++ compiler AOTInductor may use: one whose shared libraries load safely into Python.

AOTInductor compiles each package's wrapper into a shared library that ``dlopen`` loads into
the running process. A compiler whose runtime library directory holds only a static
``libstdc++.a`` (seen on the H200 image: ``CXX=/opt/gcc/bin/g++`` wraps a GCC 13 whose
``-B`` paths link libstdc++ statically) produces a library with its own private copy of the
C++ runtime. Its locale facets are never initialised, so the first ``std::regex`` (AOTInductor
parses the device string with one while loading) dereferences garbage and the process dies
with SIGSEGV. The probe below compiles a ten-line library that builds a ``std::regex`` and
loads it into a child process that has imported torch: a compiler passes when the child survives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from trtdet.cache import cache_dir
from trtdet.errors import ModelError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

_PROBE_SOURCE = r"""
#include <regex>
#include <string>
extern "C" int trtdet_probe(void) {
    std::regex pattern("^(cuda|cpu)(:([0-9]+))?$");
    return std::regex_match(std::string("cuda:0"), pattern) ? 1 : 0;
}
"""

#: torch first, as in a real load: the crash needs the process's own (dynamic) libstdc++ beside the
#: library's static copy (here: std::bad_cast and SIGABRT; on the H200: SIGSEGV).
_PROBE_LOADER = "import ctypes, sys, torch; sys.exit(0 if ctypes.CDLL(sys.argv[1]).trtdet_probe() == 1 else 3)"


def candidate_compilers() -> list[str]:
    """``$TRTDET_CXX`` alone when set; else ``$CXX``, then the system's ``g++``, ``c++``, ``clang++``."""
    forced = os.environ.get("TRTDET_CXX")
    if forced:
        return [forced]
    names = [os.environ.get("CXX") or "", "/usr/bin/g++", "g++", "c++", "clang++"]
    found: list[str] = []
    seen: set[str] = set()
    for name in names:
        path = shutil.which(name) if name else None
        if path is None:
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            found.append(path)
    return found


def probe_compiler(compiler: str) -> str | None:
    """None when ``compiler``'s shared libraries load and run ``std::regex``; else why not."""
    with tempfile.TemporaryDirectory(prefix="trtdet-cxx-") as tmp:
        source = Path(tmp) / "probe.cpp"
        library = Path(tmp) / "probe.so"
        source.write_text(_PROBE_SOURCE)
        try:
            build = subprocess.run(
                [compiler, "-shared", "-fPIC", "-O0", str(source), "-o", str(library)],
                capture_output=True, text=True, timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot run: {exc}"
        if build.returncode != 0:
            first = (build.stderr.strip().splitlines() or ["no output"])[0]
            return f"cannot compile a shared library: {first}"
        loaded = subprocess.run([sys.executable, "-c", _PROBE_LOADER, str(library)], capture_output=True, timeout=60)
        if loaded.returncode < 0:
            return f"its shared libraries crash when loaded into Python (signal {-loaded.returncode}; a static libstdc++?)"
        if loaded.returncode != 0:
            return f"its shared libraries do not load into Python (exit status {loaded.returncode})"
    return None


def _verdict_key(compiler: str) -> str | None:
    """What a probe's verdict depends on: the compiler file, this Python and this torch."""
    try:
        real = os.path.realpath(shutil.which(compiler) or compiler)
        stat = os.stat(real)
    except OSError:
        return None
    return f"{real}|{stat.st_mtime_ns}|{stat.st_size}|{sys.executable}|{torch.__version__}"


def _verdicts_file() -> Path:
    return cache_dir() / "cxx-probes.json"


def _load_verdicts() -> dict[str, str | None]:
    try:
        loaded = json.loads(_verdicts_file().read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_verdicts(verdicts: dict[str, str | None]) -> None:
    path = _verdicts_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(verdicts, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next build its probes
        tmp.unlink(missing_ok=True)


def _choose() -> tuple[str, tuple[str, ...]]:
    candidates = candidate_compilers()
    verdicts = _load_verdicts()
    keys = [_verdict_key(compiler) for compiler in candidates]
    unknown = [compiler for compiler, key in zip(candidates, keys, strict=True) if key is None or key not in verdicts]
    # Each probe is a compile and a child Python importing torch (seconds each): run them at once.
    with ThreadPoolExecutor(max_workers=max(1, len(unknown))) as pool:
        fresh = dict(zip(unknown, pool.map(probe_compiler, unknown), strict=True))
    rejected: list[str] = []
    changed = False
    for compiler, key in zip(candidates, keys, strict=True):
        if compiler in fresh:
            reason = fresh[compiler]
            if key is not None:
                verdicts[key] = reason
                changed = True
        else:
            reason = verdicts[key]  # type: ignore[index]
        if reason is None:
            if changed:
                _save_verdicts(verdicts)
            return compiler, tuple(rejected)
        rejected.append(f"{compiler}: {reason}")
    if changed:
        _save_verdicts(verdicts)
    detail = "; ".join(rejected) or "no g++, c++ or clang++ on PATH"
    raise ModelError(
        f"AOTInductor needs a C++ compiler whose shared libraries load into Python ({detail}); "
        "install g++ or set TRTDET_CXX"
    )


_choice: Future | None = None
_choice_lock = threading.Lock()


def start_choosing() -> Future:
    """Begin choosing the compiler in the background (once per process); a build calls this first,
    so the probes run while the network is exported."""
    global _choice
    with _choice_lock:
        if _choice is None:
            _choice = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trtdet-cxx-probe").submit(_choose)
        return _choice


def choose_compiler() -> tuple[str, tuple[str, ...]]:
    """The first candidate that passes the probe, and why each earlier one was passed over.

    Verdicts are remembered in the trtdet cache (``cxx-probes.json``), keyed on the compiler
    file, Python and torch, so only a machine's first build pays for the probes.
    """
    global _choice
    try:
        return start_choosing().result()
    except ModelError:
        with _choice_lock:
            _choice = None  # a compiler installed later is found by the next build
        raise
