"""Which batches a whole-pipeline CUDA graph takes, and what its key holds (host logic, no GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from trtdet.cuda.graph_keys import GraphKey, graph_key

torch = pytest.importorskip("torch")


def _unpinned(array: np.ndarray) -> bool:
    return False


def _image(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def test_the_key_is_each_images_shape_the_dtype_and_where_uploads_run():
    images = [_image(1080, 1920), _image(480, 640)]
    key = graph_key(images, "float16", 4, _unpinned)
    assert key == GraphKey(((1080, 1920), (480, 640)), "float16", True)
    assert key.batch == 2 and key.image_bytes == 1080 * 1920 * 3 + 480 * 640 * 3
    # same shapes, other pixels: the same key (a camera stream hits one entry)
    assert graph_key([_image(1080, 1920) + 7, _image(480, 640)], "float16", 4, _unpinned) == key
    # order matters (staging offsets and transforms follow it), so do dtype and pinned sources
    assert graph_key(images[::-1], "float16", 4, _unpinned) != key
    assert graph_key(images, "float32", 4, _unpinned) != key
    first_pinned = graph_key(images, "float16", 4, lambda a: a is images[0])
    assert first_pinned is not None and not first_pinned.uploads


@pytest.mark.parametrize(
    "batch",
    [
        [],  # empty
        [_image(8, 8)] * 5,  # over max_batch
        [np.zeros((8, 8), np.uint8)],  # gray: the ordinary path converts or refuses it
        [np.zeros((8, 8, 3), np.float32)],
        [np.zeros((8, 8, 3), np.uint8)[:, ::2]],  # not C-contiguous
        [np.zeros((0, 8, 3), np.uint8)],
        [torch.zeros((8, 8, 3), dtype=torch.uint8)],  # tensors take the ordinary path
    ],
    ids=["empty", "too-many", "gray", "float", "strided", "empty-image", "tensor"],
)
def test_batches_a_graph_does_not_take(batch):
    assert graph_key(batch, "float16", 4, _unpinned) is None
