"""Preprocess kernels under the simulator: the warp vs cv2.warpAffine, the resize-and-pad letterbox vs
cv2.resize + copyMakeBorder (both also vs the CPU preprocessor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet.preprocess.base import StagingPreprocessor
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

from ..checks import (
    CENTERNET_MEAN,
    CENTERNET_STD,
    assert_matches_cv2_warp,
    compare_preprocess,
    letterbox_levels_vs_cv2,
    load_photos,
    random_images,
)

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

CASES = {
    "centernet": dict(mean=CENTERNET_MEAN, std=CENTERNET_STD, channel_order="BGR", border_value=0),
    "yolo": dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="RGB", border_value=114),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("size", [(20, 24), (17, 13)])
def test_real_photos_match_cv2_warp_affine(case, size):
    options = CASES[case]
    photos = load_photos()
    got = CudaWarpAffinePreprocessor(size, **options)(photos)
    want = WarpAffinePreprocessor(size, **options)(photos)
    stats = compare_preprocess(got.tensor.numpy(), want.tensor, options["mean"], options["std"])
    assert_matches_cv2_warp(stats)
    for g, w in zip(got.transforms, want.transforms, strict=True):
        np.testing.assert_array_equal(g.inverse, w.inverse)


def test_noise_images_of_mixed_sizes_and_tensor_inputs():
    rng = np.random.default_rng(3)
    images = random_images(rng, [(20, 37), (9, 14), (33, 17), (1, 1)])
    mixed = [images[0], torch.from_numpy(images[1]), images[2], images[3]]
    options = CASES["centernet"]
    got = CudaWarpAffinePreprocessor((16, 24), **options)(mixed).tensor.numpy()
    want = WarpAffinePreprocessor((16, 24), **options)(images).tensor
    assert_matches_cv2_warp(compare_preprocess(got, want, options["mean"], options["std"]))


def test_float16_output_is_the_rounded_float32_result():
    rng = np.random.default_rng(4)
    images = random_images(rng, [(30, 20), (11, 40)])
    options = CASES["yolo"]
    got = CudaWarpAffinePreprocessor((12, 16), dtype=torch.float16, **options)(images).tensor
    assert got.dtype == torch.float16
    want = WarpAffinePreprocessor((12, 16), **options)(images).tensor.astype(np.float16)
    np.testing.assert_array_equal(got.numpy(), want)


def test_rejects_non_bgr_uint8_images():
    from trtdet.errors import InputError

    pre = CudaWarpAffinePreprocessor((8, 8))
    with pytest.raises(InputError, match="image 1: expected an HxWx3 uint8"):
        pre([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])


def test_staging_ahead_keeps_each_batch_its_own_pixels():
    """Two batches staged before either is warped (the pipelined detector's order) stay apart."""
    rng = np.random.default_rng(5)
    first = random_images(rng, [(20, 30), (25, 12)])
    second = random_images(rng, [(40, 18)])
    third = random_images(rng, [(9, 9), (15, 33), (22, 22)])
    options = CASES["centernet"]
    reference = WarpAffinePreprocessor((16, 16), **options)
    pre = CudaWarpAffinePreprocessor((16, 16), **options)
    assert isinstance(pre, StagingPreprocessor)  # what makes the detector overlap batches
    staged_first = pre.stage(first)
    staged_second = pre.stage(second)
    with pytest.raises(RuntimeError, match="two batches are already staged"):
        pre.stage(third)
    np.testing.assert_array_equal(pre.warp(staged_first).tensor.numpy(), reference(first).tensor)
    staged_third = pre.stage(third)  # reuses the first batch's slot, now warped
    np.testing.assert_array_equal(pre.warp(staged_second).tensor.numpy(), reference(second).tensor)
    np.testing.assert_array_equal(pre.warp(staged_third).tensor.numpy(), reference(third).tensor)
    with pytest.raises(RuntimeError, match="already warped"):
        pre.warp(staged_third)


def test_discard_staged_frees_the_slots():
    pre = CudaWarpAffinePreprocessor((8, 8))
    images = [np.full((4, 4, 3), 7, np.uint8)]
    pre.stage(images)
    pre.stage(images)
    pre.discard_staged()
    assert pre.warp(pre.stage(images)).tensor.shape == (1, 3, 8, 8)


#: Source shapes for the resize-and-pad letterbox: up- and downscaling, odd sizes, portrait,
#: landscape, square, 1-pixel-wide and -high images, a single pixel.
LETTERBOX_SHAPES = [(7, 5), (5, 7), (6, 6), (97, 61), (61, 97), (40, 40), (1, 9), (9, 1), (1, 1), (1, 40), (40, 1),
                    (24, 20), (13, 17)]


@pytest.mark.parametrize("size", [(24, 20), (17, 13), (16, 16)])
def test_letterbox_kernel_is_cv2_resize_and_pad(size):
    rng = np.random.default_rng(size[0])
    images = random_images(rng, LETTERBOX_SHAPES)
    options = CASES["yolo"]
    got = CudaWarpAffinePreprocessor(size, letterbox="ultralytics", **options)(images)
    worst, mean = letterbox_levels_vs_cv2(got.tensor.numpy(), images, size, options["mean"], options["std"], "RGB", 114)
    assert worst <= 1 and mean <= 0.05, (worst, mean)
    want = WarpAffinePreprocessor(size, letterbox="ultralytics", **options)(images)
    np.testing.assert_array_equal(got.tensor.numpy(), want.tensor)  # bit for bit, in fact
    for g, w in zip(got.transforms, want.transforms, strict=True):
        assert (g.resized, g.pad) == (w.resized, w.pad)
        np.testing.assert_array_equal(g.inverse, w.inverse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_letterbox_kernel_on_real_photos_and_tensor_inputs(case):
    options = CASES[case]
    photos = load_photos()
    inputs = [torch.from_numpy(p) if i % 2 else p for i, p in enumerate(photos)]
    got = CudaWarpAffinePreprocessor((20, 24), letterbox="ultralytics", **options)(inputs).tensor.numpy()
    worst, mean = letterbox_levels_vs_cv2(
        got, photos, (20, 24), options["mean"], options["std"], options["channel_order"], options["border_value"]
    )
    assert worst <= 1 and mean <= 0.05, (worst, mean)
    want = WarpAffinePreprocessor((20, 24), letterbox="ultralytics", **options)(photos).tensor
    np.testing.assert_array_equal(got, want)


def test_letterbox_float16_is_the_rounded_float32_result():
    images = random_images(np.random.default_rng(6), [(30, 20), (11, 40)])
    options = CASES["yolo"]
    got = CudaWarpAffinePreprocessor((12, 16), letterbox="ultralytics", dtype=torch.float16, **options)(images).tensor
    want = WarpAffinePreprocessor((12, 16), letterbox="ultralytics", **options)(images).tensor.astype(np.float16)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_run_context_precision_reaches_the_preprocessor(precision):
    """An fp16 GPU pipeline's preprocessing writes float16 itself (the rounded float32 result)."""
    from trtdet import Model, ModelSpec, RunContext

    spec = ModelSpec(name="sim-test", class_names=("a",), input_size=(12, 16), letterbox="ultralytics", **CASES["yolo"])
    pre = Model(spec).make_preprocessor(spec, RunContext.of("cuda", precision))
    assert isinstance(pre, CudaWarpAffinePreprocessor)
    images = random_images(np.random.default_rng(5), [(30, 20), (11, 40)])
    got = pre(images).tensor
    want = WarpAffinePreprocessor((12, 16), letterbox="ultralytics", **CASES["yolo"])(images).tensor
    assert got.dtype == (torch.float16 if precision == "fp16" else torch.float32)
    np.testing.assert_array_equal(got.numpy(), want.astype(np.float16 if precision == "fp16" else np.float32))


@pytest.mark.parametrize("skip_rows", [False, True], ids=["all-rows", "read-rows"])
@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("letterbox", ["ultralytics", "warp"])
def test_threaded_piecewise_staging_is_byte_identical(threads, letterbox, skip_rows, monkeypatch):
    """Pageable images copied into staging in pieces by several threads (as a 1080p frame is on
    the GPU): the staged bytes equal np.copyto of each whole image and the output the CPU
    reference's (cv2), for photos, strided views and a negative-stride flip (leaving out the rows
    a resize never reads, only the output is compared: those rows are not copied)."""
    from trtdet.preprocess import host_copy

    monkeypatch.setattr(host_copy, "MIN_PIECE_BYTES", 1000)  # these small images then go in many pieces
    photos = load_photos()
    rng = np.random.default_rng(threads)
    crop = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)[10:70, 5:120]
    images = [*photos, crop, random_images(rng, [(41, 37)])[0][::-1], torch.from_numpy(photos[0])]
    options = CASES["yolo"]
    pre = CudaWarpAffinePreprocessor((20, 24), letterbox=letterbox, **options)
    pre._set_copy_threads(threads, split_bytes=0, parallel_bytes=0, skip_rows=skip_rows)
    staged = pre.stage(images)
    assert len(host_copy.plan_pieces([(0, np.empty_like(photos[0]), photos[0])], threads)) > 3
    host = staged.slot.host.numpy()
    start = staged.meta_bytes
    for image in images if not skip_rows else []:
        want = np.empty(image.shape, np.uint8)
        np.copyto(want, np.asarray(image))  # the whole frame, one copy
        np.testing.assert_array_equal(host[start : start + want.nbytes].reshape(want.shape), want)
        start += want.nbytes
    got = pre.warp(staged).tensor.numpy()
    reference = [np.ascontiguousarray(np.asarray(image)) for image in images]
    want = WarpAffinePreprocessor((20, 24), letterbox=letterbox, **options)(reference).tensor
    if letterbox == "warp":  # cv2.warpAffine's own rounding differs across OpenCV versions
        assert_matches_cv2_warp(compare_preprocess(got, want, options["mean"], options["std"]))
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("letterbox", ["ultralytics", "rect"])
def test_rows_the_resize_never_reads_are_left_out_of_staging(letterbox):
    """A 3:1 downscale reads one source row in three: the other rows are not copied (staging keeps
    the garbage put there first) and the batch still equals cv2.resize + copyMakeBorder."""
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 256, (48, 72, 3), dtype=np.uint8), rng.integers(0, 256, (72, 48, 3), dtype=np.uint8)[::-1]]
    options = CASES["yolo"]
    pre = CudaWarpAffinePreprocessor((16, 24), letterbox=letterbox, **options)
    pre._set_copy_threads(2, split_bytes=0, parallel_bytes=0)
    for _ in range(2):  # both staging slots allocated, then filled with garbage
        pre.warp(pre.stage(images))
    for slot in pre._staging:
        slot.host.numpy()[:] = rng.integers(0, 256, slot.host.numel(), dtype=np.uint8)
    staged = pre.stage(images)
    host = staged.slot.host.numpy()
    first = host[staged.meta_bytes : staged.meta_bytes + images[0].nbytes].reshape(images[0].shape)
    np.testing.assert_array_equal(first[1::3], images[0][1::3])  # the rows read arrived
    assert not np.array_equal(first[0::3], images[0][0::3])  # the others were never copied
    got = pre.warp(staged).tensor.numpy()
    want = WarpAffinePreprocessor((16, 24), letterbox=letterbox, **options)([np.ascontiguousarray(i) for i in images])
    np.testing.assert_array_equal(got, want.tensor)
    worst, mean = letterbox_levels_vs_cv2(got, images, (16, 24), options["mean"], options["std"], "RGB", 114) if (
        letterbox == "ultralytics") else (0, 0)
    assert worst <= 1 and mean <= 0.05
