"""Listing ``trtdet batch`` inputs: local paths as ``trtdet run`` names them, globs, filesystem URIs."""

from __future__ import annotations

import cv2
import numpy as np

from trtdet.io.sources import expand_sources
from trtdet.ray.inputs import decode_source, list_inputs, local_name


def _tree(tmp_path):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    image = np.full((20, 30, 3), 90, np.uint8)
    for name in ("b.jpg", "a.png", "sub/c.jpg"):
        cv2.imwrite(str(folder / name), image)
    (folder / ".hidden.jpg").write_bytes(b"x")
    (folder / "clip.mp4").write_bytes(b"x")
    return folder


def test_local_directories_expand_like_trtdet_run(tmp_path):
    folder = _tree(tmp_path)
    listed = list_inputs([str(folder)])
    assert [i.source for i in listed] == [s.name for s in expand_sources([str(folder)])]
    assert [i.source for i in listed if i.error is None] == [str(folder / n) for n in ("a.png", "b.jpg", "sub/c.jpg")]
    video = next(i for i in listed if i.source.endswith("clip.mp4"))
    assert video.error == f"{folder / 'clip.mp4'}: a video (trtdet batch reads images; use trtdet run)"


def test_globs_uris_missing_inputs_and_repeats(tmp_path):
    folder = _tree(tmp_path)
    listed = list_inputs([str(folder / "*.jpg"), f"file://{folder}/sub", str(folder / "*.gif"),
                          f"file://{tmp_path}/nothing.jpg", str(folder / "b.jpg"), "3"])
    sources = [i.source for i in listed]
    assert sources[:2] == [str(folder / "b.jpg"), f"file://{folder}/sub/c.jpg"]
    errors = {i.source: i.error for i in listed if i.error}
    assert errors[str(folder / "*.gif")] == f"{folder / '*.gif'}: no file matches this pattern"
    assert errors[f"file://{tmp_path}/nothing.jpg"] == f"file://{tmp_path}/nothing.jpg: file not found"
    assert errors["3"].startswith("3: a camera")
    assert sources.count(str(folder / "b.jpg")) == 1  # listed once
    image, error, warning = decode_source(f"file://{folder}/sub/c.jpg")
    assert error is None and warning is None and image.shape == (20, 30, 3)
    image, error, warning = decode_source(f"file://{folder}/.hidden.jpg")
    assert image is None and error.endswith("not a readable image (unknown format or corrupt data)")


def test_annotated_copies_get_distinct_names():
    assert local_name("a/x.png") != local_name("b/x.png")
    assert local_name("s3://bucket/x.tif").startswith("x-") and local_name("s3://bucket/x.tif").endswith(".jpg")


def test_a_corrupt_jpeg_that_decodes_carries_its_warning_through_reading_and_detection(tmp_path, photos):
    from tests.corrupt_jpeg import encoded, libjpeg_verdict, truncated_scan
    from trtdet.ray import Detect
    from trtdet.ray.inputs import read_batch

    clean, rotten = tmp_path / "clean.jpg", tmp_path / "rotten.jpg"
    clean.write_bytes(encoded(photos["grace_hopper"]))
    rotten.write_bytes(truncated_scan(encoded(photos["grace_hopper"])))
    assert libjpeg_verdict(rotten).corrupt
    warning = f"{rotten}: corrupt JPEG data (premature end of data segment); decoded anyway, parts of the image may be gray"
    image, error, noted = decode_source(str(rotten))
    assert error is None and noted == warning
    np.testing.assert_array_equal(image, cv2.imread(str(rotten)))
    sources = np.array([str(clean), str(rotten)], dtype=object)
    read = read_batch({"source": sources, "error": np.array(["", ""], dtype=object)})
    assert list(read["warning"]) == [None, warning] and list(read["error"]) == [None, None]
    detect = Detect("yolo", input_size=(256, 256))
    from_images = detect(read).to_pylist()  # trtdet batch: read_batch's rows, then the actors
    from_bytes = detect({"bytes": [clean.read_bytes(), rotten.read_bytes()], "path": list(sources)}).to_pylist()
    for records in (from_images, from_bytes):
        assert [r["warning"] for r in records] == [None, warning]
        assert [r["error"] for r in records] == [None, None] and records[1]["width"] == 512
