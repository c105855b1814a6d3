"""Pixel bombs: the size an image's header declares is checked before anything decodes it."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from trtdet.errors import InputError, UsageError
from trtdet.io import images
from trtdet.io.gpu_jpeg import gpu_decodable
from trtdet.io.image_header import declared_size
from trtdet.io.images import decode_image_bytes, read_image
from trtdet.io.limits import CEILING_PIXELS, DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS, max_image_pixels


def _encoded(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


COLOUR = np.random.default_rng(1).integers(0, 256, (23, 37, 3), dtype=np.uint8)
GRAY = COLOUR[..., 0].copy()


@pytest.mark.parametrize(
    ("ext", "image", "params"),
    [
        (".jpg", COLOUR, ()),
        (".jpg", COLOUR, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        (".png", COLOUR, ()),
        (".png", GRAY, ()),
        (".bmp", COLOUR, ()),
        (".gif", COLOUR, ()),
        (".webp", COLOUR, (cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless: VP8L
        (".webp", COLOUR, (cv2.IMWRITE_WEBP_QUALITY, 80)),  # lossy: VP8
        (".tiff", COLOUR, ()),
        (".ppm", COLOUR, ()),
        (".pgm", GRAY, ()),
    ],
    ids=["jpeg", "jpeg-progressive", "png", "png-gray", "bmp", "gif", "webp-lossless", "webp-lossy", "tiff", "ppm", "pgm"],
)
def test_declared_size_is_what_opencv_decodes(ext, image, params):
    data = _encoded(ext, image, *params)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert declared_size(data) == (decoded.shape[1], decoded.shape[0]) == (37, 23)


def test_unknown_or_cut_headers_declare_nothing():
    assert declared_size(b"hello, not an image") is None
    assert declared_size(b"\x89PNG\r\n\x1a\n\x00\x00") is None
    assert declared_size(_encoded(".jpg", COLOUR)[:20]) is None


def _png_header(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG declaring ``width`` x ``height`` 8-bit gray, with ``body`` as its (zlib) pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000, zlib.compress(b"\x00" * 30001)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called on a pixel bomb")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    with pytest.raises(InputError) as info:
        read_image(bomb)
    message = str(info.value)
    assert message.startswith(f"{bomb}: image too large: 30000x30000 = 900,000,000 pixels")
    assert "over 536,870,911, the most trtdet can process" in message and "\n" not in message


def test_the_limit_names_how_to_raise_it_and_raising_it_lets_the_image_through(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), COLOUR)
    monkeypatch.setenv(ENV_MAX_PIXELS, "500")
    with pytest.raises(InputError, match=rf"37x23 = 851 pixels, over the limit of 500 \(raise it with {ENV_MAX_PIXELS}=N, up to 536,870,911\)"):
        read_image(path)
    with pytest.raises(InputError, match="over the limit of 500"):
        decode_image_bytes(path.read_bytes(), "bytes")  # the bytes entry point checks too
    monkeypatch.setenv(ENV_MAX_PIXELS, "851")
    assert read_image(path).shape == (23, 37, 3)


def test_the_limit_defaults_and_is_capped_at_what_opencv_can_hold(monkeypatch):
    monkeypatch.delenv(ENV_MAX_PIXELS, raising=False)
    assert max_image_pixels() == DEFAULT_MAX_PIXELS == 2**28
    monkeypatch.setenv(ENV_MAX_PIXELS, str(10**12))
    assert max_image_pixels() == CEILING_PIXELS
    assert CEILING_PIXELS * 4 < 2**31  # a BGRA image of that size still indexes with int32
    monkeypatch.setenv(ENV_MAX_PIXELS, "lots")
    with pytest.raises(UsageError, match="TRTDET_MAX_IMAGE_PIXELS='lots': expected a whole number"):
        max_image_pixels()


def test_a_format_without_a_header_reader_is_checked_after_decoding(monkeypatch):
    monkeypatch.setenv(ENV_MAX_PIXELS, "500")
    monkeypatch.setattr(images, "declared_size", lambda data: None)
    with pytest.raises(InputError, match="37x23 = 851 pixels, over the limit of 500"):
        decode_image_bytes(_encoded(".png", COLOUR), "x.png")


def test_jpegs_over_the_limit_are_not_sent_to_the_gpu(monkeypatch):
    data = _encoded(".jpg", COLOUR)
    assert gpu_decodable(data)
    monkeypatch.setenv(ENV_MAX_PIXELS, "500")
    assert not gpu_decodable(data)


@pytest.mark.slow
def test_a_real_decodable_bomb_among_good_images_leaves_their_results(tmp_path, photos):
    """27000x27000 gray decodes (OpenCV's own cap is 2**30 pixels) to 2.2 GB of BGR, which
    crashed ``cv2.warpAffine`` and the whole run with it. Run in a child process so a crash
    shows as its exit status rather than taking pytest down."""
    side = 27000
    packer = zlib.compressobj(1)
    rows = b"\x00" * ((side + 1) * 1000)
    body = b"".join(packer.compress(rows) for _ in range(side // 1000)) + packer.flush()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(side, side, body))
    assert bomb.stat().st_size < 4 * 2**20
    done = subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", "run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(bomb),
         "-s", str(photos["coffee"]), "--json", "-", "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert f"{bomb}: image too large: 27000x27000 = 729,000,000 pixels" in lines[1]
    assert [line.startswith("error: ") for line in done.stderr.splitlines() if "error" in line] == [True]
