"""Pageable images into staging in pieces: the bytes equal a plain np.copyto, each piece is
complete (and every piece before it) when it is handed to the upload, in staging order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trtdet.errors import UsageError
from trtdet.preprocess import host_copy
from trtdet.preprocess.host_copy import copy_pieces, copy_threads, plan_pieces


def _layout(images: list[np.ndarray], header: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """A staging buffer (``header`` bytes, then the images back to back) and the copies into it."""
    total = header + sum(image.nbytes for image in images)
    staging = np.full(total, 7, dtype=np.uint8)
    copies, start = [], header
    for image in images:
        copies.append((start, staging[start : start + image.nbytes].reshape(image.shape), image))
        start += image.nbytes
    return staging, copies


def _frames(rng: np.random.Generator) -> list[np.ndarray]:
    full = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    crop = rng.integers(0, 256, (700, 1300, 3), dtype=np.uint8)[50:650, 100:1200]  # a strided view
    flipped = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)[::-1]  # negative strides
    return [full, crop, flipped]


@pytest.mark.parametrize("threads", [1, 2, 4, 8])
def test_pieces_fill_staging_like_one_copyto_and_upload_in_order(threads):
    rng = np.random.default_rng(threads)
    images = _frames(rng)
    header = 256
    staging, copies = _layout(images, header)
    want = np.full_like(staging, 7)
    for start, _, image in copies:
        np.copyto(want[start : start + image.nbytes].reshape(image.shape), image)  # the independent reference
    pieces = plan_pieces(copies, threads)
    uploaded: list[tuple[int, int]] = []

    def upload(piece):
        end = piece.offset + piece.nbytes
        # Handed over complete: this piece and everything before it already hold their bytes.
        np.testing.assert_array_equal(staging[header:end], want[header:end])
        uploaded.append((piece.offset, end))

    pool = ThreadPoolExecutor(threads - 1) if threads > 1 else None
    try:
        copy_pieces(pieces, pool, upload)
    finally:
        if pool is not None:
            pool.shutdown()
    np.testing.assert_array_equal(staging, want)
    # Contiguous, in order, covering exactly the images' bytes.
    assert uploaded[0][0] == header and uploaded[-1][1] == staging.size
    assert all(a[1] == b[0] for a, b in zip(uploaded, uploaded[1:], strict=False))


def test_one_1080p_frame_is_a_few_pieces_and_large_batches_bounded_ones():
    frame = np.zeros((1080, 1920, 3), np.uint8)
    _, one = _layout([frame], 0)
    for threads in (1, 2, 4, 8):
        count = len(plan_pieces(one, threads))
        assert 4 <= count <= 7, (threads, count)  # 6.2 MB in pieces of at least 1 MB
    _, many = _layout([frame] * 32, 0)
    pieces = plan_pieces(many, 8)
    assert all(piece.nbytes <= host_copy.MAX_PIECE_BYTES for piece in pieces)
    assert len(pieces) >= 4 * 8


def test_a_failing_piece_raises_and_leaves_no_thread_copying():
    rng = np.random.default_rng(9)
    staging, copies = _layout(_frames(rng), 0)
    pieces = plan_pieces(copies, 4)
    bad = pieces[3]
    pieces[3] = host_copy.Piece(bad.offset, bad.nbytes, bad.target, np.zeros((1, 2, 2), np.uint8))  # cannot broadcast
    pool = ThreadPoolExecutor(1)
    try:
        with pytest.raises(ValueError):
            copy_pieces(pieces, pool, lambda piece: None)
        after = staging.copy()
    finally:
        pool.shutdown(wait=True)  # runs whatever was still queued and not cancelled
    np.testing.assert_array_equal(staging, after)  # nothing wrote into staging after the error


def test_thread_count_comes_from_the_environment_or_the_cores(monkeypatch):
    monkeypatch.delenv(host_copy.ENV_THREADS, raising=False)
    assert copy_threads() == max(1, min(8, host_copy.usable_cores() // 2))
    monkeypatch.setenv(host_copy.ENV_THREADS, "3")
    assert copy_threads() == 3
    for bad in ("0", "many", "-2"):
        monkeypatch.setenv(host_copy.ENV_THREADS, bad)
        with pytest.raises(UsageError, match=f"TRTDET_COPY_THREADS='{bad}': expected a whole number"):
            copy_threads()
