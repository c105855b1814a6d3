"""Procedural detection scenes: textured geometric shapes composited onto real photos.

Every scene is a pure function of ``(seed, index)``, so a training run, its held-out set and a
test all see exactly the same pixels for the same numbers. Objects vary in class, size,
aspect, rotation, colour and texture (solid, gradient, stripes, checker, noise, photo patch),
may be partly hidden by later objects (never more than ``MAX_OCCLUDED`` of their area), and
the whole scene gets clutter strokes, blur, noise and JPEG artefacts at random.
Boxes are the tight axis-aligned boxes of each full geometric shape, in pixel-edge
coordinates ``[x1, y1, x2, y2]`` (pixel i spans [i, i + 1]). cv2's anti-aliased fill renders
polygons about 0.7 px fatter on every side, so a shape's visible extent may pass its box by
up to ~1 px (the shipped model was trained with exactly this rendering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "arrow")
MAX_OCCLUDED = 0.4
_SUBPIXEL_BITS = 4


@dataclass(frozen=True)
class SceneConfig:
    """Size and density of one family of scenes (training crops vs evaluation scenes)."""

    height: int = 256
    width: int = 256
    min_size: float = 20.0
    max_size: float = 180.0
    objects_per_64k_pixels: float = 5.0
    jpeg_probability: float = 0.3


@dataclass
class Scene:
    image: np.ndarray  # HWC uint8 BGR
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    class_ids: np.ndarray  # (N,) int64


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _cross(arm: float) -> np.ndarray:
    a = arm
    return np.array(
        [
            [-a, -1],
            [a, -1],
            [a, -a],
            [1, -a],
            [1, a],
            [a, a],
            [a, 1],
            [-a, 1],
            [-a, a],
            [-1, a],
            [-1, -a],
            [-a, -a],
        ],
        dtype=np.float64,
    )


def _arrow(shaft: float, head: float) -> np.ndarray:
    return np.array(
        [
            [-1, -shaft],
            [1 - head, -shaft],
            [1 - head, -0.75],
            [1, 0],
            [1 - head, 0.75],
            [1 - head, shaft],
            [-1, shaft],
        ],
        dtype=np.float64,
    )


def _shape_polygons(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Outer polygon (and hole) of a class in unit coordinates (fits the unit disc)."""
    if name == "circle":
        return _regular(64), None
    if name == "square":
        return _regular(4, np.pi / 4) * math.sqrt(2) * 0.75, None
    if name == "triangle":
        return _regular(3, -np.pi / 2), None
    if name == "star":
        return _star(5, rng.uniform(0.38, 0.5)), None
    if name == "cross":
        return _cross(rng.uniform(0.25, 0.38)), None
    if name == "ring":
        return _regular(64), _regular(64) * rng.uniform(0.45, 0.65)
    if name == "arrow":
        return _arrow(rng.uniform(0.2, 0.32), rng.uniform(0.6, 0.8)), None
    raise ValueError(f"unknown shape class {name!r}")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(40, 256)]]], np.uint8)
    if rng.random() < 0.15:  # greys, black and white too
        hsv[0, 0, 1] = rng.integers(0, 30)
        hsv[0, 0, 2] = rng.integers(0, 256)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _texture(h: int, w: int, rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """A (h, w, 3) float32 BGR fill pattern."""
    kind = rng.choice(6, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.15])
    c1, c2 = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if kind == 0:
        tex = np.broadcast_to(c1, (h, w, 3)).copy()
    elif kind == 1:
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
        tex = c1 + t[..., None] * (c2 - c1)
    elif kind == 2:
        t = (np.sin(along * 2 * np.pi / rng.uniform(4, 16)) > 0).astype(np.float32)
        tex = c1 + t[..., None] * (c2 - c1)
    elif kind == 3:
        cell = rng.uniform(3, 10)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
        tex = c1 + t[..., None] * (c2 - c1)
    elif kind == 4:
        small = rng.random((max(2, h // 6), max(2, w // 6))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        tex = c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)
    else:
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        ch, cw = min(ph, max(h, 8) * 2), min(pw, max(w, 8) * 2)
        y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        crop = photo[y0 : y0 + ch, x0 : x0 + cw]
        tex = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        tex = tex * rng.uniform(0.5, 1.2) + (c1 - 128) * rng.uniform(0, 0.5)
    shade = 1 + rng.uniform(-0.25, 0.25) * (along - along.mean()) / max(float(np.ptp(along)), 1.0)
    return np.clip(tex * shade[..., None], 0, 255)


def _background(cfg: SceneConfig, rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    def crop() -> np.ndarray:
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        max_scale = min(ph / cfg.height, pw / cfg.width)
        scale = math.exp(rng.uniform(math.log(min(0.3, max_scale)), math.log(max_scale)))
        ch, cw = max(2, int(cfg.height * scale)), max(2, int(cfg.width * scale))
        y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        out = cv2.resize(
            photo[y0 : y0 + ch, x0 : x0 + cw], (cfg.width, cfg.height), interpolation=cv2.INTER_LINEAR
        )
        return out[:, ::-1] if rng.random() < 0.5 else out

    image = crop().astype(np.float32)
    if rng.random() < 0.15:
        image = 0.5 * image + 0.5 * crop().astype(np.float32)
    image = image * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    if rng.random() < 0.3:  # colour cast
        image = image + rng.uniform(-25, 25, size=3)
    return np.clip(image, 0, 255)


def _clutter(image: np.ndarray, rng: np.random.Generator) -> None:
    h, w = image.shape[:2]
    for _ in range(rng.integers(0, 4)):
        colour = tuple(float(c) for c in _random_colour(rng))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    if rng.random() < 0.2:
        text = "".join(chr(c) for c in rng.integers(65, 91, size=rng.integers(3, 8)))
        org = (int(rng.integers(0, max(1, w - 60))), int(rng.integers(15, h)))
        colour = tuple(float(c) for c in _random_colour(rng))
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.3, 0.8), colour, 1, cv2.LINE_AA)


def _place(
    cfg: SceneConfig, rng: np.random.Generator, size: float
) -> tuple[int, np.ndarray, np.ndarray | None, np.ndarray]:
    """Pick a class and pose; returns (class id, outer polygon, hole, box) in image pixels."""
    class_id = int(rng.integers(len(CLASS_NAMES)))
    outer, hole = _shape_polygons(CLASS_NAMES[class_id], rng)
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    transform = rot @ np.diag([size / 2 * aspect, size / 2 / aspect])
    outer = outer @ transform.T
    lo, hi = outer.min(0), outer.max(0)
    extent = hi - lo
    if extent[0] > cfg.width - 4 or extent[1] > cfg.height - 4:
        scale = 0.95 * min((cfg.width - 4) / extent[0], (cfg.height - 4) / extent[1])
        transform, outer, lo, hi = transform * scale, outer * scale, lo * scale, hi * scale
    centre = np.array(
        [rng.uniform(1 - lo[0], cfg.width - 1 - hi[0]), rng.uniform(1 - lo[1], cfg.height - 1 - hi[1])]
    )
    outer = outer + centre
    if hole is not None:
        hole = hole @ transform.T + centre
    box = np.concatenate([outer.min(0), outer.max(0)])
    return class_id, outer, hole, box


def _mask(outer: np.ndarray, hole: np.ndarray | None, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage (h, w) uint8 of the polygon, in a patch whose corner is (x0, y0).

    A pixel's centre sits at integer coordinates; the polygon is in continuous coordinates
    where pixel i spans [i, i + 1], hence the half-pixel shift.
    """
    mask = np.zeros((h, w), np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    pts = np.round((outer - [x0 + 0.5, y0 + 0.5]) * scale).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
    if hole is not None:
        pts = np.round((hole - [x0 + 0.5, y0 + 0.5]) * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 0, cv2.LINE_AA, _SUBPIXEL_BITS)
    return mask


def generate_scene(seed: int, index: int, photos: list[np.ndarray], cfg: SceneConfig | None = None) -> Scene:
    """Scene number ``index`` of the family ``seed`` (a pure function of both)."""
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng([seed, index])
    image = _background(cfg, rng, photos)
    top = np.full((cfg.height, cfg.width), -1, np.int32)  # which object owns each pixel
    full_area: list[int] = []
    visible: list[int] = []
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    budget = cfg.objects_per_64k_pixels * cfg.height * cfg.width / 65536
    wanted = int(rng.integers(1, max(2, round(budget)) + 1))
    max_size = min(cfg.max_size, 0.7 * min(cfg.height, cfg.width))
    log_lo, log_hi = math.log(cfg.min_size), math.log(max(cfg.min_size + 1, max_size))
    for _attempt in range(wanted * 3):
        if len(boxes) == wanted:
            break
        class_id, outer, hole, box = _place(cfg, rng, math.exp(rng.uniform(log_lo, log_hi)))
        x0, y0 = max(0, int(box[0]) - 2), max(0, int(box[1]) - 2)
        x1, y1 = min(cfg.width, int(box[2]) + 3), min(cfg.height, int(box[3]) + 3)
        mask = _mask(outer, hole, x0, y0, y1 - y0, x1 - x0)
        solid = mask > 127
        owners = top[y0:y1, x0:x1][solid]
        covered = np.bincount(owners[owners >= 0], minlength=len(boxes))
        if any(visible[j] - covered[j] < (1 - MAX_OCCLUDED) * full_area[j] for j in range(len(boxes))):
            continue
        region = image[y0:y1, x0:x1]
        texture = _texture(y1 - y0, x1 - x0, rng, photos)
        alpha = mask.astype(np.float32)[..., None] / 255 * rng.uniform(0.85, 1.0)
        background_mean = region[solid].mean(0) if solid.any() else region.reshape(-1, 3).mean(0)
        texture_mean = texture[solid].mean(0) if solid.any() else texture.reshape(-1, 3).mean(0)
        if np.abs(background_mean - texture_mean).sum() < 60:  # too camouflaged: push it away
            texture = np.clip(texture + np.where(texture_mean > 127, -90.0, 90.0), 0, 255)
        region[:] = region * (1 - alpha) + texture * alpha
        if rng.random() < 0.25:
            colour = tuple(float(c) for c in _random_colour(rng))
            scale = 1 << _SUBPIXEL_BITS
            for poly in (outer, hole) if hole is not None else (outer,):
                pts = np.round((poly - 0.5) * scale).astype(np.int32)
                cv2.polylines(image, [pts], True, colour, 1, cv2.LINE_AA, _SUBPIXEL_BITS)
        for j in range(len(boxes)):
            visible[j] -= int(covered[j])
        top[y0:y1, x0:x1][solid] = len(boxes)
        full_area.append(int(solid.sum()))
        visible.append(int(solid.sum()))
        boxes.append(box)
        classes.append(class_id)
    out = np.clip(image, 0, 255).astype(np.uint8)
    _clutter(out, rng)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.3))
    if rng.random() < 0.5:
        noise = rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(2, 8)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_probability:
        ok, jpg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
        out = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    box_array = np.array(boxes, np.float32).reshape(-1, 4)
    return Scene(out, box_array, np.array(classes, np.int64))
