"""CPU decode against upstream ``ctdet_decode`` + ``ctdet_post_process`` on hand-made heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trtdet.errors import ModelError
from trtdet.preprocess.affine import letterbox_transform
from trtdet_centernet.decode import CenterNetDecoder, decode_centernet

from . import upstream_reference as upstream

BACKGROUND = -6.0


def fused(hm: np.ndarray, wh: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """[1, H*W, 4 + 2C] deployment output from NCHW-less heads ``hm [C,H,W]``, ``wh``/``reg`` ``[2,H,W]``."""
    hm_t = torch.from_numpy(hm)[None]
    pool = F.max_pool2d(hm_t, 3, stride=1, padding=1)
    cat = torch.cat([torch.from_numpy(reg)[None], torch.from_numpy(wh)[None], hm_t, pool], dim=1)
    return cat.permute(0, 2, 3, 1).reshape(1, -1, cat.shape[1]).numpy()


def heads(num_classes: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    hm = np.full((num_classes, height, width), BACKGROUND, np.float32)
    wh = rng.uniform(2, 12, (2, height, width)).astype(np.float32)
    reg = rng.uniform(0, 1, (2, height, width)).astype(np.float32)
    return hm, wh, reg


def upstream_detections(hm, wh, reg, image_hw, k, threshold):
    """Upstream's pipeline: sigmoid, ctdet_decode, ctdet_post_process; clipped like ours; score > thr."""
    num_classes, height, width = hm.shape
    with torch.no_grad():
        dets = upstream.ctdet_decode(
            torch.from_numpy(hm)[None].sigmoid(), torch.from_numpy(wh)[None], torch.from_numpy(reg)[None], K=k
        ).numpy()
    img_h, img_w = image_hw
    center = np.array([img_w / 2.0, img_h / 2.0], dtype=np.float32)
    scale = max(img_h, img_w) * 1.0
    per_class = upstream.ctdet_post_process(dets.copy(), [center], [scale], height, width, num_classes)[0]
    rows = [(*box[:4], box[4], cls - 1) for cls, boxes in per_class.items() for box in boxes]
    rows = np.array([r for r in rows if r[4] > threshold], np.float64).reshape(-1, 6)
    rows[:, 0:4:2] = rows[:, 0:4:2].clip(0, img_w)
    rows[:, 1:4:2] = rows[:, 1:4:2].clip(0, img_h)
    return rows[np.argsort(-rows[:, 4], kind="stable")]  # post-process groups by class; rank by score


def ours(hm, wh, reg, image_hw, k, threshold):
    num_classes, height, width = hm.shape
    transform = letterbox_transform(image_hw, (height * 4, width * 4))
    (det,) = decode_centernet(
        fused(hm, wh, reg),
        [transform],
        input_size=(height * 4, width * 4),
        num_classes=num_classes,
        k=k,
        threshold=threshold,
    )
    return det


def assert_same(det, rows, *, ordered: bool):
    assert len(det) == len(rows)
    got = np.concatenate([det.xyxy, det.confidence[:, None], det.class_id[:, None]], axis=1).astype(
        np.float64
    )
    if not ordered:  # upstream's order among equal scores is unspecified
        key = lambda a: np.lexsort((a[:, 0], a[:, 1], a[:, 5], -a[:, 4]))  # noqa: E731
        got, rows = got[key(got)], rows[key(rows)]
    np.testing.assert_allclose(got, rows, rtol=1e-5, atol=1e-3)


def test_peaks_at_borders_and_corners():
    hm, wh, reg = heads(3, 16, 16)
    for (y, x), value, cls in [
        ((0, 0), 2.0, 0),
        ((0, 15), 1.0, 2),
        ((15, 0), 0.5, 1),
        ((15, 15), 1.5, 0),
        ((0, 4), 0.2, 1),
    ]:
        hm[cls, y, x] = value
    image = (300, 200)  # portrait: letterboxed left/right
    det = ours(hm, wh, reg, image, k=100, threshold=0.3)
    assert_same(det, upstream_detections(hm, wh, reg, image, k=100, threshold=0.3), ordered=True)
    assert det.class_id.tolist() == [0, 0, 2, 1, 1]


def test_ties_are_ordered_by_flat_index():
    hm, wh, reg = heads(2, 16, 16, seed=1)
    wh[:] = 1.5  # small boxes: no clipping at the image border
    hm[1, 1, 1] = hm[1, 14, 6] = 1.0  # equal peaks, one class
    hm[0, 5, 2] = 1.0  # the same score in class 0
    hm[0, 3, 4] = hm[0, 3, 5] = 0.5  # a plateau: both cells equal their 3x3 max, both are peaks
    image = (256, 256)
    det = ours(hm, wh, reg, image, k=100, threshold=0.1)
    assert_same(det, upstream_detections(hm, wh, reg, image, k=100, threshold=0.1), ordered=False)
    # Score descending, then flat index class * H*W + y * W + x ascending.
    expected = [(0, 5, 2), (1, 1, 1), (1, 14, 6), (0, 3, 4), (0, 3, 5)]
    assert det.class_id.tolist() == [c for c, _, _ in expected]
    scale = 256 / 64  # the letterbox maps the 64x64 input onto the 256x256 image
    for (_, y, x), box in zip(expected, det.xyxy, strict=True):
        centre = [(x + reg[0, y, x]) * 4 * scale, (y + reg[1, y, x]) * 4 * scale]
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, centre, atol=1e-3)


def test_two_classes_at_one_cell_both_survive():
    hm, wh, reg = heads(4, 16, 16, seed=2)
    hm[1, 4, 4] = 2.0
    hm[3, 4, 4] = 1.0
    hm[3, 4, 5] = 0.9  # a neighbour of the class-3 peak: suppressed within class 3 only
    image = (400, 640)
    det = ours(hm, wh, reg, image, k=100, threshold=0.3)
    assert_same(det, upstream_detections(hm, wh, reg, image, k=100, threshold=0.3), ordered=True)
    assert det.class_id.tolist() == [1, 3]
    np.testing.assert_array_equal(det.xyxy[0], det.xyxy[1])  # same cell, same box


def test_fewer_peaks_than_k():
    hm, wh, reg = heads(2, 16, 16, seed=3)
    hm[0, 2, 2], hm[1, 12, 1] = 0.0, -1.0  # scores 0.5 and 0.27
    image = (128, 128)
    det = ours(hm, wh, reg, image, k=100, threshold=0.01)
    assert_same(det, upstream_detections(hm, wh, reg, image, k=100, threshold=0.01), ordered=True)
    assert len(det) == 2
    # Upstream's list always has K entries; the rest are background (score sigmoid(-6)) or
    # non-peaks (score 0), and no threshold above 0.0025 keeps them.
    assert len(upstream_detections(hm, wh, reg, image, k=100, threshold=0.0)) == 100


@pytest.mark.parametrize(("k", "threshold"), [(7, 0.2), (100, 0.2), (100, 0.0), (100, 0.9), (50, 0.995)])
def test_top_k_over_classes_and_positions_on_random_heatmaps(k, threshold):
    rng = np.random.default_rng(4)
    hm = rng.normal(-1.0, 2.5, (5, 16, 16)).astype(np.float32)
    _, wh, reg = heads(5, 16, 16, seed=4)
    image = (480, 640)
    det = ours(hm, wh, reg, image, k=k, threshold=threshold)
    rows = upstream_detections(hm, wh, reg, image, k=k, threshold=threshold)
    assert_same(det, rows, ordered=True)
    assert len(det) == min(k, len(rows)) and len(det) > 0


def test_threshold_is_strictly_greater():
    hm, wh, reg = heads(1, 4, 4)
    hm[0, 1, 1] = 0.0  # score exactly 0.5
    assert len(ours(hm, wh, reg, (16, 16), k=10, threshold=0.5)) == 0
    assert len(ours(hm, wh, reg, (16, 16), k=10, threshold=np.nextafter(np.float32(0.5), np.float32(0)))) == 1


def test_optional_classwise_nms():
    hm, wh, reg = heads(2, 8, 8, seed=5)
    wh[:] = 20.0
    reg[:] = 0.5
    hm[0, 2, 2], hm[0, 2, 4], hm[1, 2, 3] = 2.0, 1.5, 1.0  # overlapping boxes, two classes
    fused_out = fused(hm, wh, reg)
    transform = letterbox_transform((32, 32), (32, 32))
    args = dict(input_size=(32, 32), num_classes=2, k=100, threshold=0.3)
    (plain,) = decode_centernet(fused_out, [transform], **args)
    (nms,) = decode_centernet(fused_out, [transform], iou_threshold=0.5, **args)
    assert plain.class_id.tolist() == [0, 0, 1]
    assert nms.class_id.tolist() == [0, 1]  # the second class-0 box (IoU 0.6) goes, class 1 stays
    # the 80-pixel boxes are all clipped to the 32x32 image (IoU 1): across classes only the best stays
    (agnostic,) = decode_centernet(fused_out, [transform], iou_threshold=0.5, agnostic=True, **args)
    assert agnostic.class_id.tolist() == [0] and agnostic.confidence[0] == plain.confidence.max()


def test_decoder_protocol_and_validation():
    decoder = CenterNetDecoder(num_classes=2, input_size=(32, 32), threshold=0.3)
    decoder.validate({"output": ("batch", 64, 8)}, "m.onnx")
    with pytest.raises(
        ModelError, match=r"^m\.onnx: output 'output' has 164 channels, expected 8 = 4 \+ 2 x 2 classes"
    ):
        decoder.validate({"output": (1, 64, 164)}, "m.onnx")
    with pytest.raises(ModelError, match=r"^m\.onnx: output 'out' has shape \[1, 8, 8, 8\]"):
        decoder.validate({"out": (1, 8, 8, 8)}, "m.onnx")
    with pytest.raises(ModelError, match=r"^m\.onnx: expected one CenterNet output"):
        decoder.validate({"hm": (1, 2, 8, 8), "wh": (1, 2, 8, 8)}, "m.onnx")
    with pytest.raises(ModelError, match=r"\[B, 64, 8\]"):
        decoder.validate({"output": (1, 100, 8)}, "m.onnx")

    hm, wh, reg = heads(2, 8, 8, seed=6)
    hm[1, 3, 3] = 1.0
    batch = np.concatenate([fused(hm, wh, reg), fused(hm[::-1].copy(), wh, reg)])
    transforms = [letterbox_transform((32, 32), (32, 32))] * 2
    first, second = decoder({"output": batch}, transforms)
    assert first.class_id.tolist() == [1] and second.class_id.tolist() == [0]
    np.testing.assert_allclose(first.xyxy, second.xyxy)


def test_an_engines_pool_hm_rounded_differently_does_not_drop_a_peak():
    """A compiled engine may return a pooled copy one ulp off its own ``hm`` (seen with
    AOTInductor fp32 on the H200): the peak is still found, as upstream (which pools ``hm``
    itself) finds it."""
    hm, wh, reg = heads(3, 16, 16, seed=5)
    hm[1, 6, 9], hm[2, 0, 3], hm[0, 15, 15] = -0.7341, 1.25, 0.5
    image = (600, 512)
    output = fused(hm, wh, reg)
    pool = output[0, :, 4 + 3 :]
    output[0, :, 4 + 3 :] = np.nextafter(pool, np.float32(np.inf))  # every pooled value one ulp up
    transform = letterbox_transform(image, (64, 64))
    (det,) = decode_centernet(output, [transform], input_size=(64, 64), num_classes=3, k=100, threshold=0.3)
    assert_same(det, upstream_detections(hm, wh, reg, image, k=100, threshold=0.3), ordered=True)
    assert det.class_id.tolist() == [2, 0, 1]
