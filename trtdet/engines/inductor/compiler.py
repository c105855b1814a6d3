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

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trtdet.errors import ModelError

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


@functools.cache
def choose_compiler() -> tuple[str, tuple[str, ...]]:
    """The first candidate that passes the probe, and why each earlier one was passed over."""
    rejected: list[str] = []
    for compiler in candidate_compilers():
        reason = probe_compiler(compiler)
        if reason is None:
            return compiler, tuple(rejected)
        rejected.append(f"{compiler}: {reason}")
    detail = "; ".join(rejected) or "no g++, c++ or clang++ on PATH"
    raise ModelError(
        f"AOTInductor needs a C++ compiler whose shared libraries load into Python ({detail}); "
        "install g++ or set TRTDET_CXX"
    )
