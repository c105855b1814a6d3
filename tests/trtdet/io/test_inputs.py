"""The Python API's inputs: paths, pathlib, PIL images and lists of any mix, read as the CLI reads files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

import trtdet
from trtdet.errors import InputError
from trtdet.io.inputs import as_image


@pytest.fixture(scope="module")
def yolo():
    with trtdet.load("yolo") as detector:
        yield detector


def test_a_path_string_or_pathlib_is_read_as_cv2_imread_reads_it(photos):
    reference = cv2.imread(str(photos["grace_hopper"]), cv2.IMREAD_COLOR)
    assert np.array_equal(as_image(str(photos["grace_hopper"])), reference)
    assert np.array_equal(as_image(photos["grace_hopper"]), reference)


@pytest.mark.parametrize("name", ["chelsea", "camera"])
def test_a_pil_image_becomes_the_bgr_array_cv2_reads_from_the_same_file(photos, name):
    with Image.open(photos[name]) as image:
        got = as_image(image)
    assert np.array_equal(got, cv2.imread(str(photos[name]), cv2.IMREAD_COLOR))


def test_a_16_bit_pil_image_scales_like_the_cli_reading_the_file(tmp_path, photos):
    gray = cv2.imread(str(photos["camera"]), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257 + 3
    cv2.imwrite(str(tmp_path / "deep.png"), gray)
    with Image.open(tmp_path / "deep.png") as image:
        got = as_image(image)
    expected = gray >> 8  # cv2.imread's 16-bit rule (the high byte), by hand
    assert np.array_equal(got, np.repeat(expected.astype(np.uint8)[:, :, None], 3, axis=2))
    assert np.array_equal(got, cv2.imread(str(tmp_path / "deep.png")))
    assert np.array_equal(got, trtdet.io.images.read_image(tmp_path / "deep.png"))


def test_bad_inputs_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing\.jpg: file not found"):
        as_image(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match=r"is a directory; use detector\.stream\(path\)"):
        as_image(tmp_path)
    with pytest.raises(InputError, match="expected an image array, a file path or a PIL image, got dict"):
        as_image({"not": "an image"})


def test_detector_takes_paths_pil_images_and_mixed_lists(yolo, photos):
    array = cv2.imread(str(photos["chelsea"]))
    expected = yolo(array)
    assert "cat" in {yolo.class_names[c] for c in expected.class_id}
    for single in (str(photos["chelsea"]), photos["chelsea"]):
        got = yolo(single)
        assert np.array_equal(got.xyxy, expected.xyxy) and np.array_equal(got.class_id, expected.class_id)
    with Image.open(photos["chelsea"]) as pil:
        mixed = yolo([str(photos["grace_hopper"]), pil, array, photos["coffee"]])
    assert len(mixed) == 4
    assert np.array_equal(mixed[1].xyxy, expected.xyxy) and np.array_equal(mixed[2].xyxy, expected.xyxy)
    assert np.array_equal(mixed[0].xyxy, yolo(cv2.imread(str(photos["grace_hopper"]))).xyxy)
    assert np.array_equal(yolo.submit(photos["chelsea"]).result().xyxy, expected.xyxy)


def test_stream_reads_sources_as_the_cli_does(yolo, photos, tmp_path):
    """Folders (image/video files only), videos and bad files, in order, each reported."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.imread(str(photos["chelsea"])))
    (folder / "b.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("skipped: not an image or video")
    image = cv2.imread(str(photos["motorcycle"]))
    writer = cv2.VideoWriter(str(folder / "c.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, image.shape[1::-1])
    for _ in range(3):
        writer.write(image)
    writer.release()
    seen = [(r.source.rsplit("/", 1)[-1], r.index, r.error, r) for r in yolo.stream(folder)]
    assert [(name, index) for name, index, _, _ in seen] == [("a.png", None), ("b.jpg", None), ("c.mp4", 0), ("c.mp4", 1), ("c.mp4", 2)]
    assert seen[1][2].endswith("b.jpg: file is empty") and len(seen[1][3]) == 0 and seen[1][3].image is None
    assert "cat" in {yolo.class_names[c] for c in seen[0][3].class_id}
    assert all("motorcycle" in {yolo.class_names[c] for c in d.class_id} for _, _, _, d in seen[2:])
    one = list(yolo.stream([str(folder / "a.png")]))
    assert len(one) == 1 and np.array_equal(one[0].xyxy, seen[0][3].xyxy)
