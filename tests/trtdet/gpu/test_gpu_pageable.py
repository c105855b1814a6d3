"""1080p frames in ordinary (pageable) memory on the GPU: the staging copy in pieces, on 1 to 8
threads, uploads exactly the frame's bytes (or every row the resize reads, when the others are
left out), and a frame's detections equal the same frame's from pinned memory (uploaded
straight from the caller's buffer, whole, without the staging copy).

Skips with the reason when there is no CUDA GPU, numba-cuda or torch.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import trtdet
from trtdet.io.images import read_image

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

THREADS = [1, 2, 4, 8]


@pytest.fixture(scope="module")
def frames(photos) -> list[np.ndarray]:
    """1080p copies of real photos: contiguous, a strided crop of a larger frame, a flipped view."""
    full = [cv2.resize(read_image(photos[name]), (1920, 1080)) for name in ("astronaut", "motorcycle", "coffee")]
    larger = cv2.resize(read_image(photos["chelsea"]), (2000, 1200))
    return [full[0], larger[60:1140, 40:1960], full[1][::-1], full[2]]


def _exact(got: trtdet.Detections, want: trtdet.Detections) -> bool:
    return (np.array_equal(got.xyxy, want.xyxy) and np.array_equal(got.confidence, want.confidence)
            and np.array_equal(got.class_id, want.class_id))


@pytest.mark.parametrize("skip_rows", [False, True], ids=["all-rows", "read-rows"])
@pytest.mark.parametrize("threads", THREADS)
def test_pieces_upload_the_frames_bytes_exactly(frames, threads, skip_rows):
    """Every byte of each frame (or, leaving out unread rows, every row the resize reads) reaches
    the GPU, and the letterboxed batch equals cv2.resize + copyMakeBorder bit for bit."""
    pytest.importorskip("numba.cuda")
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor
    from trtdet.preprocess.cuda_resize import resize_row_band

    pre = CudaWarpAffinePreprocessor((640, 640), letterbox="square", border_value=114)
    pre._set_copy_threads(threads, split_bytes=0, parallel_bytes=0, skip_rows=skip_rows)
    for batch in ([frames[0]], [frames[1]], [frames[2]], frames):
        staged = pre.stage(batch)
        out = pre.warp(staged).tensor
        torch.cuda.synchronize()
        start = staged.meta_bytes
        for frame, transform in zip(batch, staged.transforms, strict=True):
            want = torch.from_numpy(np.ascontiguousarray(frame)).cuda()
            got = staged.slot.dev[start : start + want.numel()].view(want.shape)
            band = resize_row_band(frame.shape[0], transform.resized[0]) if skip_rows else None
            rows = torch.arange(frame.shape[0], device="cuda")
            read = ((rows % band[0] >= band[1]) & (rows % band[0] < band[2])) if band else rows >= 0
            assert torch.equal(got[read], want[read])
            start += want.numel()
        reference = WarpAffinePreprocessor((640, 640), letterbox="square", border_value=114)(list(batch)).tensor
        np.testing.assert_array_equal(out.cpu().numpy(), reference)  # cv2.resize + copyMakeBorder, bit for bit


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_pageable_batch_one_detections_equal_pinned_frames_on_every_thread_count(frames, cuda_graphs):
    pytest.importorskip("numba.cuda")
    pinned = trtdet.pinned_frames(len(frames), 1080, 1920)
    for target, frame in zip(pinned, frames, strict=True):
        np.copyto(target, frame)
    with trtdet.load("yolo", device="cuda", batch=32, cuda_graphs=cuda_graphs) as detector:
        want = [detector(frame) for frame in pinned]  # no staging copy: uploaded from the caller's pinned buffer
        assert sum(len(w) for w in want) > 0
        want_32 = detector.detect([pinned[n % len(pinned)] for n in range(32)])  # the same engine batch size
        default = detector.preprocessor._copy_threads
        settings = [dict(threads=default), dict(threads=default, skip_rows=False),
                    *(dict(threads=n, parallel_bytes=0) for n in THREADS)]  # one frame on threads too
        for setting in settings:
            detector.preprocessor._set_copy_threads(**setting)
            for n, frame in enumerate(frames):
                got = detector(frame)
                assert _exact(got, want[n]), f"copy {setting}, frame {n}: {got} != {want[n]}"
            many = detector.detect([frames[n % len(frames)] for n in range(32)])
            wrong = [n for n, got in enumerate(many) if not _exact(got, want_32[n])]
            assert not wrong, f"copy {setting}, batch of 32: frames {wrong} differ from their pinned result"
