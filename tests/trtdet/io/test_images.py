"""Reading images: the pixels cv2.imread gives for unusual formats, and one-line errors for bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.png_writer import GRAY_ALPHA, PALETTE, RGBA, write_png
from trtdet.errors import InputError
from trtdet.io.images import read_image, to_bgr_uint8


def _files_of_every_pixel_kind(folder: Path) -> dict[str, Path]:
    """Image files whose pixels need converting, written by OpenCV or by hand (tests/png_writer.py)."""
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (9, 7, 4), dtype=np.uint16)
    files: dict[str, Path] = {}

    def cv2_file(name: str, pixels: np.ndarray) -> None:
        files[name] = folder / name
        assert cv2.imwrite(str(files[name]), pixels)

    cv2_file("gray.png", u8[..., 0])
    cv2_file("bgra.png", u8)
    cv2_file("bgr16.png", u16[..., :3])
    cv2_file("gray16.png", u16[..., 0])
    cv2_file("bgra16.png", u16)
    cv2_file("bgr16.tif", u16[..., :3])
    cv2_file("gray16.tif", u16[..., 0])
    cv2_file("bgra.tif", u8)
    cv2_file("gray.jpg", u8[..., 0])
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    indices = rng.integers(0, 16, (9, 7), dtype=np.uint8)
    files["palette.png"] = write_png(folder / "palette.png", indices, PALETTE, palette=palette)
    files["palette_trns.png"] = write_png(
        folder / "palette_trns.png", indices, PALETTE, palette=palette, trns=bytes(range(0, 256, 16))
    )
    files["gray_alpha.png"] = write_png(folder / "gray_alpha.png", u8[..., :2], GRAY_ALPHA)
    files["gray_alpha16.png"] = write_png(folder / "gray_alpha16.png", u16[..., :2], GRAY_ALPHA)
    files["rgba_by_hand.png"] = write_png(folder / "rgba_by_hand.png", u8, RGBA)
    return files


KINDS = ["gray.png", "bgra.png", "bgr16.png", "gray16.png", "bgra16.png", "bgr16.tif", "gray16.tif", "bgra.tif",
         "gray.jpg", "palette.png", "palette_trns.png", "gray_alpha.png", "gray_alpha16.png", "rgba_by_hand.png"]


@pytest.mark.parametrize("name", KINDS)
def test_files_read_as_cv2_imread_reads_them(tmp_path, name):
    """Gray, alpha, palette and 16-bit files: the same pixels as cv2.imread(path) (what Ultralytics reads)."""
    path = _files_of_every_pixel_kind(tmp_path)[name]
    want = cv2.imread(str(path))
    assert want is not None and want.shape[2] == 3
    got = read_image(path)
    assert got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("gray.png", np.arange(63, dtype=np.uint8).reshape(9, 7)),
        ("bgra.png", np.arange(252, dtype=np.uint8).reshape(9, 7, 4)),
        ("bgr16.png", (np.arange(189, dtype=np.uint16) * 347).reshape(9, 7, 3)),
        ("gray16.png", (np.arange(63, dtype=np.uint16) * 1039).reshape(9, 7)),
        ("bgra16.png", (np.arange(252, dtype=np.uint16) * 260).reshape(9, 7, 4)),
    ],
)
def test_arrays_convert_as_cv2_imread_reads_their_files(tmp_path, name, pixels):
    """An array given directly converts like the PNG file holding it reads (16-bit: the high byte)."""
    path = tmp_path / name
    assert cv2.imwrite(str(path), pixels)
    np.testing.assert_array_equal(to_bgr_uint8(pixels), cv2.imread(str(path)))


def _with_exif_orientation(jpeg: bytes, orientation: int, order: bytes) -> bytes:
    """``jpeg`` with an APP1 Exif segment (one IFD0 entry: orientation) right after SOI."""
    fmt = ">" if order == b"MM" else "<"
    tiff = order + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1)
    tiff += struct.pack(fmt + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(fmt + "I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@pytest.mark.parametrize(("orientation", "order"), [(6, b"MM"), (3, b"II"), (8, b"II"), (1, b"MM")])
def test_exif_orientation_is_applied_as_cv2_imread_applies_it(tmp_path, orientation, order):
    image = np.zeros((24, 40, 3), np.uint8)
    image[:8, :12] = 255  # a white top-left corner shows where the turn put it
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    path = tmp_path / "turned.jpg"
    path.write_bytes(_with_exif_orientation(jpeg, orientation, order))
    want = cv2.imread(str(path))
    assert (want.shape[:2] == (40, 24)) == (orientation in (6, 8))
    np.testing.assert_array_equal(read_image(path), want)


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
