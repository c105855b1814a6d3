"""Python API inputs that are not HWC uint8 BGR: converted by the file rules, or one clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import trtdet
from trtdet.errors import InputError
from trtdet.io.limits import ENV_MAX_PIXELS


@pytest.fixture(scope="module")
def yolo():
    with trtdet.load("yolo") as detector:
        yield detector


@pytest.fixture(scope="module")
def chelsea(photos):
    return cv2.imread(str(photos["chelsea"]))


def _same(a, b) -> bool:
    return len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=1e-3) and np.array_equal(a.class_id, b.class_id)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (None, TypeError, "image 0: expected an HxWx3 uint8 BGR numpy array, a file path or a PIL image, got None"),
        (3.5, TypeError, "got float"),
        ([[1, 2], [3, 4]], TypeError, "got list"),  # one image as nested lists: a list of lists
        (np.zeros((0, 5, 3), np.uint8), ValueError, "image has no pixels"),
        (np.zeros((4, 4, 3, 2), np.uint8), ValueError, "expected an HxW, HxWx3 or HxWx4 image, got shape ("),  # called: a batch of 4
        (np.zeros((4, 4, 2), np.uint8), ValueError, "got shape (4, 4, 2)"),
        (np.zeros((4, 4, 3), np.int32), ValueError, "unsupported pixel type int32"),
        (np.zeros((4, 4, 3), bool), ValueError, "unsupported pixel type bool"),
    ],
    ids=["none", "float-scalar", "nested-list", "empty", "5d", "2-channel", "int32", "bool"],
)
def test_what_is_not_an_image_is_one_clear_error(yolo, bad, error, message):
    for call in (lambda: yolo(bad), lambda: yolo.detect([bad]), lambda: yolo.submit(bad)):
        with pytest.raises(error) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_path_is_one_line_naming_it(yolo, tmp_path):
    missing = tmp_path / "photo.jpg"
    with pytest.raises(InputError, match=r"photo\.jpg: file not found$"):
        yolo.submit(str(missing))
    with pytest.raises(InputError, match=r"photo\.jpg: file not found$"):
        yolo(missing)


def test_gray_bgra_16_bit_float_and_strided_arrays_give_the_bgr_images_detections(yolo, chelsea):
    expected = yolo(chelsea)
    assert "cat" in {yolo.class_names[c] for c in expected.class_id}
    as_uint16 = chelsea.astype(np.uint16) * 257  # exactly representable: converts back to chelsea
    as_float = chelsea.astype(np.float32) / 255.0
    bgra = cv2.cvtColor(chelsea, cv2.COLOR_BGR2BGRA)
    rgb_view = cv2.cvtColor(chelsea, cv2.COLOR_BGR2RGB)[..., ::-1]  # a negative-stride view of BGR
    for variant in (as_uint16, bgra, rgb_view):
        assert _same(yolo(variant), expected)
        assert _same(yolo.submit(variant).result(timeout=60), expected)
    np.testing.assert_allclose(yolo(as_float).confidence, expected.confidence, atol=0.02)
    gray = cv2.cvtColor(chelsea, cv2.COLOR_BGR2GRAY)
    reference = yolo(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))  # cv2's own gray -> BGR
    assert _same(yolo(gray), reference) and _same(yolo(gray[..., None]), reference)


def test_an_array_over_the_pixel_limit_is_refused_before_any_work(yolo, monkeypatch):
    monkeypatch.setenv(ENV_MAX_PIXELS, "1000")
    with pytest.raises(ValueError, match=r"image 0: image too large: 40x30 = 1,200 pixels, over the limit of 1,000"):
        yolo(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="over the limit"):
        yolo.submit(np.zeros((30, 40, 3), np.uint8))


def test_a_scheduler_user_cannot_hand_the_warp_an_image_over_the_limit(yolo, chelsea, monkeypatch):
    """The CLI adds frames to the detector's scheduler directly; the pipeline checks sizes itself."""
    monkeypatch.setenv(ENV_MAX_PIXELS, str(chelsea.shape[0] * chelsea.shape[1]))
    big = np.zeros((chelsea.shape[0] + 1, chelsea.shape[1], 3), np.uint8)
    with yolo.scheduler() as scheduler:
        outcomes = scheduler.add(chelsea, "ok") + scheduler.add(big, "big") + scheduler.drain()
    by_tag = {o.tag: o for o in outcomes}
    assert by_tag["ok"].error is None and len(by_tag["ok"].result) > 0
    assert "image too large" in str(by_tag["big"].error)


def test_a_path_to_a_corrupt_jpeg_warns_and_is_detected_on(yolo, photos, tmp_path):
    """The API has no record: a ``CorruptImageWarning``; ``stream`` puts the line in ``frame.warning``."""
    from tests.corrupt_jpeg import encoded, libjpeg_verdict, truncated_scan

    path = tmp_path / "rotten.jpg"
    path.write_bytes(truncated_scan(encoded(photos["chelsea"])))
    assert libjpeg_verdict(path).corrupt
    with pytest.warns(trtdet.CorruptImageWarning, match=r"rotten\.jpg: corrupt JPEG data \(premature end"):
        found = yolo(str(path))
    assert _same(found, yolo(cv2.imread(str(path))))  # the pixels cv2 gives, detected on
    (streamed,) = list(yolo.stream(str(path)))
    assert streamed.warning.startswith(f"{path}: corrupt JPEG data (premature end") and _same(streamed, found)


def test_a_float_image_with_nan_or_inf_pixels_is_refused_naming_it(yolo, chelsea, tmp_path):
    """One NaN used to hide the image's range (``max()`` is NaN): the 0..1 image was never scaled
    and every detection vanished. Non-finite pixels are now an error naming the input."""
    as_float = chelsea.astype(np.float32) / 255.0
    assert "cat" in {yolo.class_names[c] for c in yolo(as_float).class_id}  # the clean image is detected on
    for bad_value in (np.nan, np.inf, -np.inf):
        spoilt = as_float.copy()
        spoilt[3, 5, 1] = bad_value
        for call in (yolo, yolo.submit):
            with pytest.raises(InputError) as info:
                call(spoilt)
            assert str(info.value) == "image 0: 1 pixel value(s) are NaN or infinite; a float image must be finite"
    tiff = tmp_path / "float.tiff"
    spoilt = as_float.copy()
    spoilt[:2, :2] = np.nan
    assert cv2.imwrite(str(tiff), spoilt)
    assert np.isnan(cv2.imread(str(tiff), cv2.IMREAD_UNCHANGED)).sum() == 12  # cv2 keeps the NaNs in the file
    with pytest.raises(InputError, match=rf"^{tiff}: 12 pixel value\(s\) are NaN or infinite"):
        yolo(str(tiff))


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server over ``tmp_path`` (no network needed)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_read_by_the_stream_reader_as_the_cli_reads_it(yolo, photos, http_folder):
    folder, base = http_folder
    (folder / "cat.png").write_bytes(photos["chelsea"].read_bytes())
    expected = yolo(cv2.imread(str(photos["chelsea"])))
    assert _same(yolo(f"{base}/cat.png"), expected)
    assert _same(yolo.submit(f"{base}/cat.png").result(timeout=60), expected)
    with pytest.raises(InputError) as info:
        yolo(f"{base}/missing.png")
    assert str(info.value) == f"{base}/missing.png: cannot open stream"


def test_an_empty_path_is_one_clear_error(yolo):
    for call in (lambda: yolo(""), lambda: yolo.submit(""), lambda: yolo([""])):
        with pytest.raises(InputError) as info:
            call()
        assert str(info.value) == "'': empty path; expected an image file path, a URL or an array"
