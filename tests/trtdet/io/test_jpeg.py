"""JPEG decoding: cv2.imdecode's pixels, and a warning wherever libjpeg found the data corrupt.

References: ``cv2.imdecode``/``cv2.imread`` for the pixels (the EXIF turn included), and
libjpeg's own messages as OpenCV prints them in a child process for whether a file is corrupt
(tests/corrupt_jpeg.py).
"""

from __future__ import annotations

import struct
import warnings
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.corrupt_jpeg import DAMAGES, encoded, flipped_scan, libjpeg_verdict, truncated_scan
from trtdet.errors import CorruptImageWarning, InputError
from trtdet.io.images import decode_image, read_image
from trtdet.io.sources import Source, iter_frames


def _cv2(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def clean_jpegs(photos) -> dict[str, bytes]:
    """Real photos as shipped (JPEGs of scikit-image and matplotlib) and re-encoded every way OpenCV can."""
    found = {name: photos[name].read_bytes() for name in ("grace_hopper", "rocket")}
    for name in ("hubble_deep_field.jpg", "retina.jpg"):  # scikit-image's other JPEG photos, where installed
        path = Path(str(files("skimage") / "data" / name))
        if path.is_file():
            found[name] = path.read_bytes()
    for name in ("astronaut", "chelsea", "coffee", "motorcycle"):
        found[f"{name}_420"] = encoded(photos[name], quality=75, sampling_factor=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420)
        found[f"{name}_444"] = encoded(photos[name], sampling_factor=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)
    found["chelsea_422"] = encoded(photos["chelsea"], sampling_factor=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422)
    found["chelsea_411"] = encoded(photos["chelsea"], sampling_factor=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411)
    found["astronaut_progressive"] = encoded(photos["astronaut"], progressive=1)
    found["astronaut_restarts"] = encoded(photos["astronaut"], rst_interval=4)
    found["astronaut_optimized"] = encoded(photos["astronaut"], optimize=1)
    gray = cv2.imread(str(photos["camera"]), cv2.IMREAD_GRAYSCALE)
    found["camera_gray"] = cv2.imencode(".jpg", gray)[1].tobytes()
    found["camera_gray_progressive"] = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    odd = cv2.imread(str(photos["coffee"]))[:397, :601]  # sizes that are no multiple of the MCU
    found["coffee_odd_size"] = cv2.imencode(".jpg", odd)[1].tobytes()
    return found


def test_clean_jpegs_decode_to_cv2s_pixels_without_a_warning(clean_jpegs, tmp_path):
    assert len(clean_jpegs) >= 16
    for name, data in clean_jpegs.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        verdict = libjpeg_verdict(path)
        assert verdict.decoded and not verdict.stderr, (name, verdict)  # libjpeg finds nothing wrong
        decoded = decode_image(data, str(path))
        assert decoded.warning is None, name
        np.testing.assert_array_equal(decoded.image, _cv2(data), err_msg=name)
        assert decoded.image.flags["C_CONTIGUOUS"] and decoded.image.shape[2] == 3


def _with_exif(jpeg: bytes, entries: list[tuple[int, int, int, bytes]], order: bytes = b"II") -> bytes:
    """``jpeg`` with an APP1 Exif segment after SOI: IFD0 holding ``(tag, type, count, 4 value bytes)``."""
    fmt = "<" if order == b"II" else ">"
    tiff = order + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", len(entries))
    for tag, kind, count, value in entries:
        tiff += struct.pack(fmt + "HHI", tag, kind, count) + value
    body = b"Exif\x00\x00" + tiff + struct.pack(fmt + "I", 0)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def _orientation_entry(value: int, order: bytes) -> tuple[int, int, int, bytes]:
    fmt = "<" if order == b"II" else ">"
    return (0x0112, 3, 1, struct.pack(fmt + "HH", value, 0))


@pytest.mark.parametrize("order", [b"II", b"MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_cv2_applies_it(photos, tmp_path, orientation, order):
    data = _with_exif(encoded(photos["rocket"]), [_orientation_entry(orientation, order)], order)
    path = tmp_path / "turned.jpg"
    path.write_bytes(data)
    want = cv2.imread(str(path))
    assert (want.shape[0] > want.shape[1]) == (orientation >= 5)  # the rocket photo is landscape
    decoded = decode_image(data, str(path))
    assert decoded.warning is None
    np.testing.assert_array_equal(decoded.image, want)


@pytest.mark.parametrize(
    "entries",
    [
        [(0x0112, 4, 1, struct.pack("<I", 6))],  # orientation as a LONG: OpenCV reads its low half
        [(0x0112, 3, 1, struct.pack("<HH", 9, 0))],  # out of range: OpenCV leaves the image as it is
        [(0x0110, 2, 4, b"cam\x00"), _orientation_entry(8, b"II")],  # another tag first
    ],
)
def test_unusual_exif_reads_as_cv2_reads_it(photos, tmp_path, entries):
    path = tmp_path / "odd_exif.jpg"
    path.write_bytes(_with_exif(encoded(photos["grace_hopper"]), entries))
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_two_exif_segments_read_as_cv2_reads_them(photos, tmp_path):
    once = _with_exif(encoded(photos["grace_hopper"]), [_orientation_entry(6, b"II")])
    path = tmp_path / "two_exif.jpg"
    path.write_bytes(_with_exif(once, [_orientation_entry(3, b"II")]))
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_cmyk_jpeg_reads_as_cv2_reads_it(photos, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    path = tmp_path / "cmyk.jpg"
    pil.open(photos["chelsea"]).convert("CMYK").save(path, quality=90)
    want = cv2.imread(str(path))
    assert want is not None and want.shape[2] == 3
    np.testing.assert_array_equal(read_image(path), want)


def _corrupt_files(photos, folder: Path) -> dict[str, Path]:
    """Every damage on baseline, progressive and restart-marker encodings of a real photo."""
    made = {}
    for encoding, flags in {"baseline": {}, "progressive": {"progressive": 1}, "restarts": {"rst_interval": 4}}.items():
        data = encoded(photos["grace_hopper"], **flags)
        for damage, make in DAMAGES.items():
            made[f"{encoding}_{damage}"] = folder / f"{encoding}_{damage}.jpg"
            made[f"{encoding}_{damage}"].write_bytes(make(data))
    return made


def test_corrupt_jpegs_that_decode_carry_libjpegs_warning_and_cv2s_pixels(photos, tmp_path):
    outcomes = {"warned": 0, "clean": 0, "unreadable": 0}
    for name, path in _corrupt_files(photos, tmp_path).items():
        verdict, data = libjpeg_verdict(path), path.read_bytes()
        if not verdict.decoded:  # past what OpenCV decodes: one error line naming libjpeg's complaint
            with pytest.raises(InputError, match=r"not a readable image \(corrupt JPEG data: "):
                decode_image(data, str(path))
            outcomes["unreadable"] += 1
            continue
        decoded = decode_image(data, str(path))
        np.testing.assert_array_equal(decoded.image, _cv2(data), err_msg=name)
        if not verdict.corrupt:  # e.g. junk before EOI of a progressive file: libjpeg does not mind
            assert decoded.warning is None, (name, verdict)
            outcomes["clean"] += 1
            continue
        assert decoded.warning is not None, (name, verdict)
        assert decoded.warning.startswith(f"{path}: corrupt JPEG data (") and "\n" not in decoded.warning
        assert decoded.warning.endswith("); decoded anyway, parts of the image may be gray")
        outcomes["warned"] += 1
    # Most damages still decode (the silent wrong answers this is about); some are beyond OpenCV.
    assert outcomes["warned"] >= 10 and outcomes["unreadable"] >= 1, outcomes


def test_the_warning_quotes_libjpegs_message(photos, tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(truncated_scan(encoded(photos["grace_hopper"])))
    verdict = libjpeg_verdict(path)
    assert verdict.stderr == "Corrupt JPEG data: premature end of data segment" and verdict.decoded
    assert decode_image(path.read_bytes(), "cut.jpg").warning == (
        "cut.jpg: corrupt JPEG data (premature end of data segment); decoded anyway, parts of the image may be gray"
    )


def test_api_paths_warn_with_a_named_category(photos, tmp_path):
    """``read_image`` (what ``detector(path)`` reads with) has no record: a ``CorruptImageWarning``."""
    path = tmp_path / "rotten.jpg"
    path.write_bytes(flipped_scan(encoded(photos["grace_hopper"], progressive=1)))
    assert libjpeg_verdict(path).corrupt
    with pytest.warns(CorruptImageWarning, match=r"rotten\.jpg: corrupt JPEG data \(bad Huffman code\)"):
        image = read_image(path)
    np.testing.assert_array_equal(image, cv2.imread(str(path)))
    clean = tmp_path / "clean.jpg"
    clean.write_bytes(encoded(photos["grace_hopper"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(clean)


@pytest.mark.parametrize("workers", [1, 2])
def test_frames_read_ahead_carry_the_warning(photos, tmp_path, workers):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    data = encoded(photos["grace_hopper"])
    good.write_bytes(data)
    bad.write_bytes(truncated_scan(data))
    frames = list(iter_frames([Source(str(good), "image"), Source(str(bad), "image")], workers=workers))
    assert [f.error for f in frames] == [None, None]
    assert frames[0].warning is None
    assert frames[1].warning.startswith(f"{bad}: corrupt JPEG data (premature end of data segment)")


def test_declared_size_is_checked_before_a_jpeg_is_decoded(photos, monkeypatch):
    monkeypatch.setenv("TRTDET_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(InputError, match="pixels"):
        decode_image(encoded(photos["grace_hopper"]), "big.jpg")


def test_an_unknown_jfif_version_is_libjpegs_harmless_warning_not_corruption(photos, tmp_path):
    data = bytearray(encoded(photos["grace_hopper"]))
    assert data[6:11] == b"JFIF\x00"
    data[11] = 3  # major version 3: libjpeg warns and decodes as usual
    path = tmp_path / "jfif3.jpg"
    path.write_bytes(bytes(data))
    verdict = libjpeg_verdict(path)
    assert verdict.decoded and "unknown JFIF revision number 3.01" in verdict.stderr and not verdict.corrupt
    decoded = decode_image(bytes(data), str(path))
    assert decoded.warning is None
    np.testing.assert_array_equal(decoded.image, _cv2(bytes(data)))
