"""Reading images: conversions of unusual formats and one-line errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtdet.errors import InputError
from trtdet.io.images import read_image, to_bgr_uint8


def test_grayscale_rgba_and_16_bit_are_converted(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    bgra = np.dstack([np.full((8, 8), 10, np.uint8), np.full((8, 8), 20, np.uint8), np.full((8, 8), 30, np.uint8), np.full((8, 8), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    cv2.imwrite(str(tmp_path / "deep.png"), np.dstack([deep] * 3))

    out = read_image(tmp_path / "gray.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and np.array_equal(out[..., 1], gray)
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (8, 8, 3) and out[0, 0].tolist() == [10, 20, 30]
    out = read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.round(deep / 65535 * 255).astype(np.uint8))


def test_float_images_in_unit_range_are_scaled():
    out = to_bgr_uint8(np.full((2, 2, 3), 0.5, np.float32))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 128


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.jpg", None, "file not found"),
        ("empty.jpg", b"", "file is empty"),
        ("notes.txt", b"hello, not an image\n", "not a readable image"),
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a readable image"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_truncated_jpeg_is_refused(tmp_path, photos):
    data = photos["grace_hopper"].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_one_pixel_image_reads(tmp_path):
    cv2.imwrite(str(tmp_path / "dot.png"), np.array([[[1, 2, 3]]], np.uint8))
    assert read_image(tmp_path / "dot.png").shape == (1, 1, 3)
