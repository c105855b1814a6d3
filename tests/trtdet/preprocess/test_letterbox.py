"""The Ultralytics letterbox on the CPU against Ultralytics' recorded geometry and cv2 resize-and-pad.

References: ``LetterBox.get_params`` and ``scale_boxes`` as Ultralytics itself computed them
(``tests/data/ultralytics/yolo11n_detections.json``, made by
``tests/data/make_ultralytics_detections.py``), and ``cv2.resize(INTER_LINEAR)`` +
``cv2.copyMakeBorder(114)`` called here with pads from Ultralytics' formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.trtdet.cuda.checks import resize_and_pad
from tests.trtdet_yolo.ultralytics_cases import CASES, make_cases
from trtdet.io.images import read_image
from trtdet.plugins import get_model, load_plugins
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.preprocess.letterbox import ultralytics_letterbox

REFERENCE = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "ultralytics" / "yolo11n_detections.json").read_text()
)

#: (H, W) image sizes x network inputs: up- and downscaling, odd sizes, portrait, landscape,
#: square, 1-pixel-wide and -high images, no resize at all.
SIZES = [(512, 512), (600, 512), (300, 451), (1080, 1920), (1920, 1080), (427, 640), (640, 640), (7, 5), (17, 13),
         (1, 1), (1, 9), (9, 1), (1, 3000), (3000, 1), (75, 113), (641, 639), (99, 101)]
INPUTS = [(640, 640), (384, 640), (33, 47)]


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise blurred into photo-like gradients (plus sharp noise on top in one channel)."""
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if min(h, w) >= 5:
        image[..., :2] = cv2.GaussianBlur(image, (5, 5), 0)[..., :2]
    return image


@pytest.mark.parametrize("entry", REFERENCE["letterbox_geometry"], ids=lambda e: "x".join(map(str, e["size"])))
def test_geometry_is_ultralytics_own(entry):
    h, w = entry["size"]
    t = ultralytics_letterbox((h, w), (640, 640))
    new_w, new_h = entry["new_unpad"]
    assert t.resized == (new_h, new_w)
    assert t.pad == (entry["top"], entry["left"])
    assert 640 - new_h - entry["top"] == entry["bottom"] and 640 - new_w - entry["left"] == entry["right"]
    back = t.boxes_to_source(np.array([entry["probe_box"]], np.float32))[0]
    np.testing.assert_allclose(back, entry["probe_box_in_source"], atol=2e-3)


def test_hand_computed_case():
    # 1080x810 (H x W) into 640: r = 640/1080, new 480x640, dw = 80 -> left 80, right 80.
    t = ultralytics_letterbox((1080, 810), (640, 640))
    assert t.resized == (640, 480) and t.pad == (0, 80)
    # box edges: x_src = (x - 80) * 810 / 480
    np.testing.assert_allclose(t.inverse, [[810 / 480, 0, -80 * 810 / 480], [0, 1080 / 640, 0]])
    # odd padding: 5 columns of padding split 2 left, 3 right (round(2.4), round(2.6))
    t = ultralytics_letterbox((640, 635), (640, 640))
    assert t.resized == (640, 635) and t.pad == (0, 2)


@pytest.mark.parametrize("size", INPUTS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("shape", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pixels_match_cv2_resize_and_pad(shape, size):
    image = smooth_image(np.random.default_rng(shape[0] * 7 + shape[1]), *shape)
    warped, transform = WarpAffinePreprocessor(size, letterbox="ultralytics").warp(image)
    want = resize_and_pad(image, size)
    assert warped.shape == want.shape == (*size, 3)
    diff = np.abs(warped.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.mean() <= 0.05, (diff.max(), diff.mean())
    np.testing.assert_array_equal(warped, want)  # it is the same OpenCV calls
    assert transform.src_size == shape


def test_network_input_is_ultralytics_rgb_over_255():
    image = smooth_image(np.random.default_rng(1), 300, 451)
    batch = WarpAffinePreprocessor((640, 640), letterbox="ultralytics", channel_order="RGB")([image])
    want = resize_and_pad(image, (640, 640))[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    np.testing.assert_allclose(batch.tensor[0], want, rtol=0, atol=1e-7)


def test_the_warp_stays_selectable_and_differs_at_the_edges():
    """letterbox="warp" is the sub-pixel warp (border blended into edge pixels when upscaling)."""
    image = np.full((100, 50, 3), 200, np.uint8)
    warp, _ = WarpAffinePreprocessor((640, 640), letterbox="warp").warp(image)
    resize, _ = WarpAffinePreprocessor((640, 640), letterbox="ultralytics").warp(image)
    np.testing.assert_array_equal(resize, resize_and_pad(image, (640, 640)))
    assert set(np.unique(resize)) == {114, 200}  # edges stay the image's own value
    assert len(np.unique(warp)) > 2  # the warp blends the 114 border into the outermost pixels


def test_models_pick_their_letterbox():
    load_plugins()
    assert get_model("yolo").spec.letterbox == "rect"  # Ultralytics' predict default (issue 25)
    assert get_model("centernet").spec.letterbox == "warp"  # upstream CenterNet's own warp


def test_unknown_letterbox_is_one_clear_error():
    with pytest.raises(ValueError, match="letterbox: expected one of rect, square, warp, stretch, ultralytics, got 'fit'"):
        WarpAffinePreprocessor((64, 64), letterbox="fit")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(tmp_path_factory.mktemp("ultralytics-cases"))


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_reads_and_letterboxes_the_pixels_ultralytics_does(name, case_files):
    """The pixels Ultralytics reads and letterboxes, computed here with the installed OpenCV.

    Ultralytics 8.4 reads a file as ``cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)``
    (``ultralytics.utils.patches.imread``) and letterboxes with ``cv2.resize`` + ``copyMakeBorder``;
    both run here, so a new OpenCV changes the reference and trtdet together. The recorded
    sizes are Ultralytics' own (``yolo11n_detections.json``).
    """
    ref = REFERENCE["cases"][name]
    path = case_files[name]
    want = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    image = read_image(path)
    assert image.shape == (ref["height"], ref["width"], 3) == want.shape
    np.testing.assert_array_equal(image, want)
    warped, _ = WarpAffinePreprocessor((640, 640), letterbox="ultralytics").warp(image)
    np.testing.assert_array_equal(warped, resize_and_pad(want, (640, 640)))


def test_users_override_the_models_letterbox():
    import trtdet
    from trtdet.errors import UsageError
    from trtdet.options import DetectorOptions

    with trtdet.load("yolo", letterbox="warp") as detector:
        assert detector.preprocessor.letterbox == "warp"
    with trtdet.load("yolo") as detector:  # the shipped yolo11n.onnx has dynamic H and W
        assert detector.preprocessor.letterbox == "rect"
    with trtdet.load("yolo", letterbox="ultralytics") as detector:  # the old name of square
        assert detector.preprocessor.letterbox == "square"
    with pytest.raises(UsageError, match="letterbox: expected one of rect, square, warp, stretch, ultralytics, got 'fit'"):
        DetectorOptions(letterbox="fit")
