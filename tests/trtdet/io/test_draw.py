"""``trtdet.draw``: labels inside the image, never over each other, higher scores on top."""

from __future__ import annotations

import cv2
import numpy as np

import trtdet
from trtdet.detections import Detections
from trtdet.io.draw import FONT, class_colour, place_label


def _label_size(text: str, image: np.ndarray) -> tuple[int, int]:
    """The label box the annotator uses, computed here from cv2.getTextSize directly."""
    thickness = max(1, round(min(image.shape[:2]) / 400))
    scale = max(0.4, min(image.shape[:2]) / 1200)
    (w, h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    return w + 2, h + baseline + 2


def _rows_and_cols(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def test_a_label_at_the_right_edge_stays_inside_the_image():
    image = np.zeros((200, 300, 3), np.uint8)
    detections = Detections([[270, 50, 299, 120]], [0.9], [0])
    canvas = trtdet.draw(image, detections, ["a_long_class_name"])
    w, h = _label_size("a_long_class_name 0.90", image)
    fill = np.all(canvas == class_colour(0), axis=2)
    rows, cols = _rows_and_cols(fill[:, :])
    # the filled label ends at the right edge and is as wide as the text: nothing was cut
    assert cols.max() == 299 and cols.min() <= 300 - w
    assert rows.min() == 50 - h  # above the box, as usual


def test_labels_of_one_box_do_not_cover_each_other_and_the_best_is_drawn_on_top():
    image = np.zeros((240, 320, 3), np.uint8)
    box = [60, 80, 200, 200]
    detections = Detections([box, box], [0.4, 0.9], [1, 2])  # the lower score first
    canvas = trtdet.draw(image, detections, ["zero", "low", "high"])
    low, high = (np.all(canvas == class_colour(c), axis=2) for c in (1, 2))
    w_high, h_high = _label_size("high 0.90", image)
    hr, hc = _rows_and_cols(high[: box[1]])  # the best score takes the spot above the box
    assert (hr.min(), hc.min()) == (box[1] - h_high, box[0])
    lr, _ = _rows_and_cols(low)
    assert lr.min() >= box[1]  # the lower one moved inside the box, below the other label
    # the two boxes' outlines coincide: the higher score's colour is the one on top
    assert high[150, box[0]] and not low[150, box[0]]


def test_place_label_steps_past_taken_spots_and_clamps_to_the_image():
    """Hand-worked spots for a 50x12 label in a 100x100 image."""
    assert place_label((10, 30, 80, 90), (50, 12), (100, 100), []) == (10, 18, 60, 30)  # above the box
    top = [(10, 0, 60, 12)]
    # above (clamped to y 0) and inside the top edge are taken: below the box, clamped to the bottom
    assert place_label((10, 5, 80, 90), (50, 12), (100, 100), top) == (10, 88, 60, 100)
    # above, inside and below all taken: the next free step down inside the box
    assert place_label((10, 0, 80, 90), (50, 12), (100, 100), [*top, (10, 88, 60, 100)]) == (10, 12, 60, 24)
    assert place_label((90, 95, 99, 99), (50, 12), (100, 100), []) == (50, 83, 100, 95)  # pulled left, inside


def test_draw_takes_a_path_and_leaves_the_input_untouched(photos):
    image = cv2.imread(str(photos["chelsea"]))
    before = image.copy()
    detections = Detections([[10, 10, 100, 100]], [0.5], [15])
    from_array = trtdet.draw(image, detections, None)
    assert np.array_equal(image, before) and not np.array_equal(from_array, image)
    assert np.array_equal(trtdet.draw(photos["chelsea"], detections), from_array)


def test_track_ids_are_part_of_the_label():
    image = np.zeros((100, 200, 3), np.uint8)
    tracked = Detections([[20, 40, 120, 90]], [0.8], [0], {"track_id": np.array([7])})
    plain = Detections([[20, 40, 120, 90]], [0.8], [0])
    w_tracked, _ = _label_size("#7 cat 0.80", image)
    w_plain, _ = _label_size("cat 0.80", image)
    widths = []
    for detections in (tracked, plain):
        fill = np.all(trtdet.draw(image, detections, ["cat"]) == class_colour(0), axis=2)[:40]
        cols = _rows_and_cols(fill)[1]
        widths.append(int(cols.max() - cols.min() + 1))
    assert widths == [w_tracked, w_plain]
