"""Background photos for the synthetic scenes, read from files that installed packages ship.

scikit-image and matplotlib carry a handful of real photos (astronaut, coffee, cat, rocket,
Grace Hopper...). Machines without those packages (the GPU box) read the same pixels from a
packed ``.npz`` made here with :func:`pack_backgrounds`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

#: (package, file inside its data folder) of every photo used as background material.
PHOTO_FILES: tuple[tuple[str, str], ...] = (
    ("skimage", "astronaut.png"),
    ("skimage", "brick.png"),
    ("skimage", "camera.png"),
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "coins.png"),
    ("skimage", "grass.png"),
    ("skimage", "gravel.png"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "retina.jpg"),
    ("skimage", "rocket.jpg"),
    ("skimage", "page.png"),
    ("skimage", "text.png"),
    ("skimage", "moon.png"),
    ("skimage", "cell.png"),
    ("matplotlib", "grace_hopper.jpg"),
    ("matplotlib", "Minduka_Present_Blue_Pack.png"),
)

#: Environment variable naming a packed background file (used where the packages are absent).
CACHE_ENV = "TRTDET_BACKGROUNDS"
MAX_SIDE = 640


def _data_dir(package: str) -> Path | None:
    if importlib.util.find_spec(package) is None:
        return None
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data"
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data"


def photo_paths() -> list[Path]:
    """Paths of the background photos available from installed packages."""
    paths = []
    for package, name in PHOTO_FILES:
        folder = _data_dir(package)
        if folder is not None and (folder / name).is_file():
            paths.append(folder / name)
    return paths


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read image")
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def pack_backgrounds(output: Path) -> Path:
    """Write every available background photo (BGR, PNG-encoded) into one ``.npz``."""
    arrays = {}
    for i, path in enumerate(photo_paths()):
        ok, png = cv2.imencode(".png", _read(path))
        assert ok
        arrays[f"{i:02d}_{path.stem}"] = png
    if not arrays:
        raise FileNotFoundError("no background photos: install scikit-image or matplotlib")
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, **arrays)
    return output


def load_backgrounds(cache: Path | None = None) -> list[np.ndarray]:
    """BGR background photos: from ``cache`` (or ``$TRTDET_BACKGROUNDS``) if given, else packages."""
    cache = cache or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None)
    if cache is not None:
        with np.load(cache) as packed:
            return [cv2.imdecode(packed[key], cv2.IMREAD_COLOR) for key in sorted(packed.files)]
    images = [_read(path) for path in photo_paths()]
    if not images:
        raise FileNotFoundError(
            f"no background photos: install scikit-image or matplotlib, or set {CACHE_ENV} to a packed .npz"
        )
    return images
