"""CenterNet decode on the CPU (numpy), with the official ``ctdet_decode`` semantics.

Input is the fused deployment output ``[B, N, 4 + 2C]`` (``N = H/stride * W/stride``),
channel-last ``[reg_x, reg_y, w, h, hm logits (C), pool_hm (C)]`` where ``pool_hm`` is the
3x3 stride-1 max-pool of the logits. The decoders test peaks against a max-pool of ``hm``
they compute themselves (``is_peak``), so an engine's rounding of ``pool_hm`` cannot drop one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from trtdet.detections import Detections
from trtdet.errors import ModelError
from trtdet.postprocess import nms
from trtdet_centernet.constants import DEFAULT_K, DEFAULT_THRESHOLD, STRIDE

if TYPE_CHECKING:
    from trtdet.geometry import AffineTransform
    from trtdet.model import ModelSpec

__all__ = ["DEFAULT_K", "DEFAULT_THRESHOLD", "STRIDE", "CenterNetDecoder", "decode_centernet", "select_peaks"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def is_peak(hm: np.ndarray, position: np.ndarray, class_id: np.ndarray, width: int) -> np.ndarray:
    """Whether ``hm[position, class_id]`` equals the 3x3 stride-1 max-pool of ``hm`` there.

    ``hm`` is ``[H*W, C]``; the pool pads with -inf (neighbours outside the map do not
    count), as ``max_pool2d(hm, 3, 1, 1)`` does. Computed from ``hm`` itself rather than
    read from the engine's ``pool_hm``: a compiled or fused engine may round that pooled copy
    differently from the ``hm`` it returns, and a peak would be lost.
    """
    height = hm.shape[0] // width
    y, x = np.divmod(position, width)
    value = hm[position, class_id]
    peak = np.ones(position.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = y + dy, x + dx
            inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            neighbour = hm[np.where(inside, ny * width + nx, position), class_id]
            peak &= ~inside | (neighbour <= value)
    return peak


def select_peaks(
    hm: np.ndarray, *, width: int, k: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` peaks of one image: ``(flat_index, class_id, position)``, best first.

    ``hm`` is ``[N, C]`` logits of an ``N / width`` x ``width`` map. A cell is a peak of class
    c when ``hm`` is the 3x3 max-pool of ``hm`` there (``is_peak``; upstream compares sigmoid
    values after pooling them; sigmoid is monotonic, so comparing the logits is the same
    test). Candidates are peaks with
    ``sigmoid(hm) > threshold`` (strictly greater: with threshold 0 the zero scores that
    upstream's ``heat * keep`` gives non-peaks never qualify).

    Order: logit descending (= score descending, but free of the ties that float32 sigmoid
    saturation creates), then ascending flat index ``class * N + position`` with
    ``position = y * W + x``. Upstream ranks with ``torch.topk``, whose order among equal
    scores is unspecified; this makes it deterministic, and the GPU decoder uses the same key.
    """
    n, num_classes = hm.shape
    if threshold >= 1.0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    if 0.0 < threshold <= 0.99:  # cheap pre-filter in logit space (with a margin); exact test below
        candidates = hm > np.float32(math.log(threshold / (1.0 - threshold)) - 1e-3)
    else:
        candidates = np.ones(hm.shape, dtype=bool)
    position, class_id = np.divmod(np.flatnonzero(candidates), num_classes)
    values = hm[position, class_id]
    keep = (_sigmoid(values) > threshold) & is_peak(hm, position, class_id, width)
    flat = class_id[keep].astype(np.int64) * n + position[keep]
    values = values[keep]
    if flat.size > k:
        # Keep everything tied with the k-th value, then sort exactly.
        kth = np.partition(values, flat.size - k)[flat.size - k]
        keep = values >= kth
        flat, values = flat[keep], values[keep]
    order = np.lexsort((flat, -values))[:k]
    flat = flat[order]
    return flat, flat // n, flat % n


def decode_centernet(
    output: np.ndarray,
    transforms: Sequence[AffineTransform],
    *,
    stride: int = STRIDE,
    input_size: tuple[int, int],
    num_classes: int,
    k: int = DEFAULT_K,
    threshold: float = DEFAULT_THRESHOLD,
    iou_threshold: float | None = None,
    agnostic: bool = False,
) -> list[Detections]:
    """Detections per image from the fused ``[B, N, 4 + 2C]`` output.

    For each image: peaks ``hm == maxpool3x3(hm)`` (from ``hm``; the ``pool_hm`` channels are
    not read, see ``is_peak``), scores ``sigmoid(hm)``, the ``k`` best with
    score ``> threshold`` (order: see ``select_peaks`` -- score descending, ties by ascending
    flat index ``class * H*W + y * W + x``), boxes
    ``(x + reg_x -/+ w/2, y + reg_y -/+ h/2) * stride`` in network-input edge coordinates,
    mapped to the original image with ``transforms[i].boxes_to_source`` (clipped). With
    ``iou_threshold`` set, the core's class-aware greedy NMS (``trtdet.postprocess.nms``: IoU >
    threshold suppresses; ``agnostic``: across classes) follows, in rank order; upstream
    applies none by default.
    """
    output = np.asarray(output)
    height, width = input_size[0] // stride, input_size[1] // stride
    expected = (height * width, 4 + 2 * num_classes)
    if output.ndim != 3 or output.shape[1:] != expected:
        raise ValueError(
            f"CenterNet output: expected [B, {expected[0]}, {expected[1]}], got {list(output.shape)}"
        )
    if len(transforms) != output.shape[0]:
        raise ValueError(f"{len(transforms)} transforms for a batch of {output.shape[0]}")
    results = []
    for image, transform in zip(output, transforms, strict=True):
        hm = image[:, 4 : 4 + num_classes]
        flat, class_id, position = select_peaks(hm, width=width, k=k, threshold=threshold)
        if flat.size == 0:
            results.append(Detections.empty())
            continue
        score = _sigmoid(hm[position, class_id])
        ys = (position // width).astype(np.float32)
        xs = (position % width).astype(np.float32)
        reg = image[position, 0:2].astype(np.float32)
        wh = image[position, 2:4].astype(np.float32)
        cx = xs + reg[:, 0]
        cy = ys + reg[:, 1]
        boxes = np.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], axis=1)
        boxes = transform.boxes_to_source(boxes * np.float32(stride))
        if iou_threshold is not None:
            keep = nms(boxes, score, None if agnostic else class_id, iou_threshold)
            boxes, score, class_id = boxes[keep], score[keep], class_id[keep]
        results.append(Detections(boxes, score, class_id))
    return results


class CenterNetDecoder:
    """``trtdet.model.Decoder`` for CenterNet's fused output on the CPU (numpy outputs)."""

    def __init__(
        self,
        num_classes: int,
        input_size: tuple[int, int],
        *,
        stride: int = STRIDE,
        k: int = DEFAULT_K,
        threshold: float = DEFAULT_THRESHOLD,
        iou_threshold: float | None = None,
        output_name: str = "output",
        agnostic: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.agnostic = agnostic
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = stride
        self.k = k
        self.threshold = threshold
        self.iou_threshold = iou_threshold
        self.output_name = output_name

    @classmethod
    def for_spec(cls, spec: ModelSpec, context: object = None) -> CenterNetDecoder:
        """This decoder class for a (run-adapted) spec: its classes, input size, stride, thresholds.

        The signature of a ``trtdet.Model`` decoder factory; ``context`` is not needed.
        """
        return cls(
            spec.num_classes,
            spec.input_size,
            stride=spec.stride or STRIDE,
            k=spec.max_detections,
            threshold=spec.conf_threshold,
            iou_threshold=spec.iou_threshold,
            agnostic=spec.agnostic_nms,
        )

    @property
    def num_channels(self) -> int:
        return 4 + 2 * self.num_classes

    def validate(self, output_shapes: dict[str, tuple[int | str | None, ...]], source: str) -> None:
        """Check the model has one ``[B, H/4*W/4, 4 + 2C]`` output; remember its name."""
        if self.output_name in output_shapes:
            name = self.output_name
        elif len(output_shapes) == 1:
            name = next(iter(output_shapes))
        else:
            raise ModelError(
                f"{source}: expected one CenterNet output named 'output', got {sorted(output_shapes)} "
                "(convert a legacy export with its separate hm/wh/reg heads first)"
            )
        shape = tuple(output_shapes[name])
        cells = (self.input_size[0] // self.stride) * (self.input_size[1] // self.stride)
        want = f"[B, {cells}, {self.num_channels}] (4 + 2 x {self.num_classes} classes)"
        if len(shape) != 3:
            raise ModelError(f"{source}: output {name!r} has shape {list(shape)}, expected {want}")
        if isinstance(shape[2], int) and shape[2] != self.num_channels:
            raise ModelError(
                f"{source}: output {name!r} has {shape[2]} channels, expected {self.num_channels} "
                f"= 4 + 2 x {self.num_classes} classes (shape {list(shape)}, expected {want})"
            )
        if isinstance(shape[1], int) and shape[1] != cells:
            raise ModelError(f"{source}: output {name!r} has shape {list(shape)}, expected {want}")
        self.output_name = name

    def __call__(self, outputs: dict[str, object], transforms: Sequence[AffineTransform]) -> list[Detections]:
        return decode_centernet(
            np.asarray(outputs[self.output_name]),
            transforms,
            stride=self.stride,
            input_size=self.input_size,
            num_classes=self.num_classes,
            k=self.k,
            threshold=self.threshold,
            iou_threshold=self.iou_threshold,
            agnostic=self.agnostic,
        )
