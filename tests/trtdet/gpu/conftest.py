"""GPU tests share one artifact cache per session, so each AOTInductor package compiles once.

``TRTDET_GPU_TEST_CACHE`` names that cache (a device run pre-builds the packages there in
parallel with ``trtdet build``, then the tests find them); without it, a session temp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _shared_gpu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("TRTDET_GPU_TEST_CACHE")
    path = Path(named) if named else tmp_path_factory.mktemp("gpu-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def isolated_cache(_shared_gpu_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides the suite's per-test cache: compiled packages are reused across GPU tests."""
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(_shared_gpu_cache))
    return _shared_gpu_cache


@pytest.fixture(scope="module")
def decoder():
    """nvJPEG through torchvision (skips, saying why, where it cannot run)."""
    from trtdet.io.gpu_jpeg import CudaJpegDecoder, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    return CudaJpegDecoder()
