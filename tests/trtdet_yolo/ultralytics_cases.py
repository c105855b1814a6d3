"""The image files on which trtdet's YOLO is compared with Ultralytics' own predictor.

Shared by ``tests/data/make_ultralytics_detections.py`` (run once in a virtual environment with
Ultralytics, it records Ultralytics' detections) and ``test_ultralytics_parity.py`` (runs trtdet
on the same files). Every case is a real photo shipped by scikit-image or matplotlib, used as
is or cut and re-encoded losslessly by exact integer operations (crops, strides, channel picks,
a fixed palette written by ``tests/png_writer.py``), so both sides read identical files whatever OpenCV or Pillow version made them.
Only numpy, OpenCV and zlib are needed (the GPU machine has no Pillow, scikit-image or matplotlib:
``TRTDET_KERNEL_ASSETS`` may name a folder holding copies of the source photos).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np

from tests.png_writer import PALETTE, write_png

SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
           "rocket.jpg", "camera.png", "horse.png", "logo.png")
MATPLOTLIB = ("grace_hopper.jpg",)
ASSETS_ENV = "TRTDET_KERNEL_ASSETS"


def source_path(name: str) -> Path:
    """A source photo: from the assets folder when ``TRTDET_KERNEL_ASSETS`` is set, else its package."""
    assets = os.environ.get(ASSETS_ENV)
    if assets:
        return Path(assets) / name
    if name in MATPLOTLIB:
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    return Path(str(files("skimage") / "data" / name))


@dataclass(frozen=True)
class Case:
    """``source`` cut to ``rows`` x ``cols`` (slices: start, stop, step), then ``kind``.

    ``kind``: ``copy`` (the file itself), ``png`` (the cut pixels as stored, any channels),
    ``gray`` (channel 1 alone, 8-bit gray PNG), ``deep`` (16-bit PNG, ``v * 256`` plus a
    fixed low byte), ``palette`` (8-bit palette PNG, 6x6x6 colour cube).
    """

    name: str
    source: str
    kind: str = "png"
    rows: tuple[int | None, int | None, int | None] = (None, None, None)
    cols: tuple[int | None, int | None, int | None] = (None, None, None)
    note: str = ""


CASES = (
    Case("astronaut", "astronaut.png", "copy", note="512x512 upscaled; ball at the bottom edge"),
    Case("grace_hopper", "grace_hopper.jpg", "copy", note="JPEG, portrait 512x600"),
    Case("chelsea", "chelsea.png", "copy", note="cat touching the edges"),
    Case("coffee", "coffee.png", "copy"),
    Case("motorcycle", "motorcycle_left.png", "copy", note="741x500 downscaled"),
    Case("rocket", "rocket.jpg", "copy", note="JPEG 640x427: no resize"),
    Case("camera", "camera.png", "copy", note="8-bit grayscale file"),
    Case("horse", "horse.png", "copy", note="RGBA file"),
    Case("logo", "logo.png", "copy", note="RGBA file"),
    Case("astronaut_wide", "astronaut.png", rows=(150, 270, None), note="very wide 512x120: cut top and bottom"),
    Case("motorcycle_tall", "motorcycle_left.png", cols=(560, 680, None), note="very tall 120x500"),
    Case("motorcycle_edges", "motorcycle_left.png", rows=(80, 400, None), cols=(150, 600, None),
         note="motorcycle cut by all four edges"),
    Case("astronaut_top_left", "astronaut.png", rows=(40, 330, None), cols=(60, 400, None),
         note="person cut by the top and left edges"),
    Case("chelsea_small", "chelsea.png", rows=(None, None, 4), cols=(None, None, 4), note="113x75, upscaled 5.7x"),
    Case("grace_small", "grace_hopper.jpg", rows=(20, 420, 4), cols=(40, 480, 4), note="110x100, upscaled"),
    Case("coffee_tiny", "coffee.png", rows=(None, None, 8), cols=(None, None, 8), note="75x50, upscaled 8.5x"),
    Case("motorcycle_gray", "motorcycle_right.png", "gray", note="gray PNG made from a colour photo"),
    Case("coffee_16bit", "coffee.png", "deep", note="16-bit RGB PNG"),
    Case("rocket_palette", "rocket.jpg", "palette", note="8-bit palette PNG"),
    Case("astronaut_column", "astronaut.png", cols=(256, 257, None), note="1 pixel wide"),
    Case("astronaut_row", "astronaut.png", rows=(300, 301, None), note="1 pixel high"),
)


def _cut(image: np.ndarray, case: Case) -> np.ndarray:
    return np.ascontiguousarray(image[slice(*case.rows), slice(*case.cols)])


def write_palette_png(path: Path, bgr: np.ndarray) -> None:
    """An 8-bit palette PNG of ``bgr`` quantised to the 6x6x6 colour cube."""
    levels = np.arange(6) * 51
    index = ((bgr[..., ::-1].astype(np.int32) + 25) // 51).clip(0, 5)
    indices = (index[..., 0] * 36 + index[..., 1] * 6 + index[..., 2]).astype(np.uint8)
    palette = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    write_png(path, indices, PALETTE, palette=palette)


def make_case(case: Case, folder: Path) -> Path:
    """Write ``case``'s image file into ``folder`` and return its path."""
    src = source_path(case.source)
    if case.kind == "copy":
        path = folder / f"{case.name}{src.suffix}"
        shutil.copyfile(src, path)
        return path
    path = folder / f"{case.name}.png"
    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{src}: unreadable"
    image = _cut(image, case)
    if case.kind == "gray":
        image = np.ascontiguousarray(image[..., 1])
    elif case.kind == "deep":
        yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        low = ((xx * 7 + yy * 13) % 256).astype(np.uint16)[..., None]
        image = image.astype(np.uint16) * 256 + low
    elif case.kind == "palette":
        write_palette_png(path, image)
        return path
    assert cv2.imwrite(str(path), image), path
    return path


def make_cases(folder: Path) -> dict[str, Path]:
    """Every case's file, by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    return {case.name: make_case(case, folder) for case in CASES}
