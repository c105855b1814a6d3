"""The new-package check: load it and run one image in a fresh Python process before caching it.

A package that crashes its loader (a compiler that breaks shared libraries, say) must never
become a cache entry, and a crash must not take the building process with it, so the check
runs in a child process. Starting Python, importing torch and creating a CUDA context is most
of the check's cost (``benchmarks/results/build_h200.md`` has the phases), so the child is started before
the compile and does all of that while the package compiles; it then waits on its stdin for
the package's path. The child unpacks into a private temporary folder (its ``TMPDIR``) that
is removed when the check ends, so a load that fails leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from trtdet.errors import ModelError

_CHILD = r"""
import importlib, json, sys, time
begun = time.perf_counter()
meta = json.loads(sys.argv[1])
for name in meta["libraries"]:
    importlib.import_module(name)
import torch
if meta["device"] == "cuda":
    torch.zeros(1, device="cuda")  # the CUDA context, made while the parent compiles
ready = time.perf_counter()
path = sys.stdin.readline().strip()
if not path:
    sys.exit(0)  # the build ended without a package
loading = time.perf_counter()
with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
    runner = torch._inductor.aoti_load_package(path, run_single_threaded=True)
loaded = time.perf_counter()
x = torch.zeros((1, 3, *meta["input_size"]), dtype=getattr(torch, meta["dtype"]), device=meta["device"])
if meta["device"] == "cuda":
    x = x.contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    runner(x)
if meta["device"] == "cuda":
    torch.cuda.synchronize()
ran = time.perf_counter()
print(json.dumps({"start_s": round(ready - begun, 2), "load_s": round(loaded - loading, 2), "first_run_s": round(ran - loaded, 2)}))
"""


class FreshProcessCheck:
    """A child process that will load a package and run one image; start it early, ``run`` it later.

    ``libraries`` are the modules registering the package's non-torch operators; ``device`` is
    ``"cuda"`` or ``"cpu"``; ``dtype`` the input's torch dtype name. Use as a context manager:
    leaving the block ends a child that was never given a package.
    """

    def __init__(self, libraries: list[str], input_size: tuple[int, int], dtype: str, device: str) -> None:
        meta = {"libraries": list(libraries), "input_size": list(input_size), "dtype": dtype, "device": device}
        self._unpack_dir = tempfile.mkdtemp(prefix="trtdet-check-")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, json.dumps(meta)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=_child_environment(self._unpack_dir),
            )
        except BaseException:
            shutil.rmtree(self._unpack_dir, ignore_errors=True)
            raise

    def run(self, path: Path, timeout: float = 600) -> dict[str, Any]:
        """Hand ``path`` to the child and wait; its timings (start, load, first run) or ``ModelError``."""
        try:
            out, err = self._process.communicate(f"{path}\n", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.close()
            raise ModelError(f"{path}: the new package did not load within {exc.timeout:.0f} s in a fresh process") from exc
        code = self._process.returncode
        shutil.rmtree(self._unpack_dir, ignore_errors=True)
        if code != 0:
            lines = [line for line in err.strip().splitlines() if line.strip()]
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise ModelError(f"{path}: the new package fails to load in a fresh process ({how}): {lines[-1] if lines else 'no output'}")
        timings = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(timings[-1]) if timings else {}

    def close(self) -> None:
        """End the child if it still runs (the build failed before there was a package); remove its unpack folder."""
        if self._process.returncode is None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.communicate()
        shutil.rmtree(self._unpack_dir, ignore_errors=True)

    def __enter__(self) -> FreshProcessCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child_environment(unpack_dir: str) -> dict[str, str]:
    """This process's environment with ``TMPDIR`` (where torch's loader unpacks) set to ``unpack_dir``;
    Inductor's own cache stays where it is here."""
    env = dict(os.environ, TMPDIR=unpack_dir)
    if "TORCHINDUCTOR_CACHE_DIR" not in env:
        try:
            from torch._inductor.runtime.cache_dir_utils import cache_dir

            env["TORCHINDUCTOR_CACHE_DIR"] = cache_dir()
        except Exception:  # noqa: BLE001 - no torch (or another layout): the child uses its default
            pass
    return env
