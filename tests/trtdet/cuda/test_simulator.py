"""Runs ``tests/trtdet/cuda/simulated`` in a child process under ``NUMBA_ENABLE_CUDASIM=1``.

numba reads the variable once, when it is first imported, so setting it here would not
work (and would leak the simulator into every other test). Each module gets its own child.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODULES = sorted(p.name for p in (HERE / "simulated").glob("test_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_kernels_under_the_cuda_simulator(module):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "simulated" / module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"simulated {module} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
