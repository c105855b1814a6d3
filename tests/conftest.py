"""Shared fixtures: real photos from installed packages, the shipped YOLO11n, an isolated cache."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _skimage_photo(name: str) -> Path:
    return Path(str(files("skimage") / "data" / name))


def _matplotlib_photo(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """Real photos that ship with scikit-image and matplotlib.

    On a machine without those packages (the GPU box), ``TRTDET_TEST_PHOTOS`` may name a
    folder holding copies of the same files.
    """
    copies = os.environ.get("TRTDET_TEST_PHOTOS")
    if copies:
        folder = Path(copies)
        names = {"grace_hopper": "grace_hopper.jpg", "astronaut": "astronaut.png", "chelsea": "chelsea.png",
                 "coffee": "coffee.png", "motorcycle": "motorcycle_left.png", "rocket": "rocket.jpg", "camera": "camera.png"}
        return {key: folder / name for key, name in names.items()}
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    found = {
        "grace_hopper": _matplotlib_photo("grace_hopper.jpg"),
        "astronaut": _skimage_photo("astronaut.png"),
        "chelsea": _skimage_photo("chelsea.png"),
        "coffee": _skimage_photo("coffee.png"),
        "motorcycle": _skimage_photo("motorcycle_left.png"),
        "rocket": _skimage_photo("rocket.jpg"),
        "camera": _skimage_photo("camera.png"),
    }
    missing = [str(p) for p in found.values() if not p.is_file()]
    assert not missing, f"photos missing from the installed packages: {missing}"
    return found


@pytest.fixture(scope="session")
def yolo_onnx() -> Path:
    from trtdet_yolo.plugin import default_model_path

    return default_model_path()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes exports and engines into its own cache directory."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(path))
    return path
