"""These modules run only under the numba CUDA simulator, in their own process.

``tests/trtdet/cuda/test_simulator.py`` starts ``pytest tests/trtdet/cuda/simulated`` with
``NUMBA_ENABLE_CUDASIM=1`` (numba reads it once, at import), so the main test session keeps
the real numba.cuda. Collected in any other session, they are ignored.
"""

import os

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    collect_ignore_glob = ["test_*.py"]
