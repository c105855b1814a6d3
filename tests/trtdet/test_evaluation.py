"""COCO evaluation: hand-computed cases and pycocotools run directly as the reference."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trtdet.detections import Detections
from trtdet.errors import UsageError
from trtdet.evaluation import category_mapping, evaluate

DATA = Path(__file__).resolve().parent.parent / "data"


def _write_set(
    folder: Path, images: list[tuple[int, int, int]], anns: list[tuple[int, int, list[float]]], cats
) -> Path:
    (folder / "images").mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in cats]}
    for image_id, w, h in images:
        name = f"{image_id}.png"
        cv2.imwrite(str(folder / "images" / name), np.zeros((h, w, 3), np.uint8))
        coco["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
    for k, (image_id, cat, (x, y, w, h)) in enumerate(anns, 1):
        coco["annotations"].append(
            {
                "id": k,
                "image_id": image_id,
                "category_id": cat,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
    path = folder / "gt.json"
    path.write_text(json.dumps(coco))
    return path


class FixedDetector:
    """Returns prepared detections, by call order (the evaluation reads images in id order)."""

    def __init__(self, per_image: list[Detections]) -> None:
        self.per_image, self.calls = per_image, 0

    def __call__(self, images):
        out = self.per_image[self.calls : self.calls + len(images)]
        self.calls += len(images)
        return out


def _det(rows):
    rows = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64))


def test_single_box_at_iou_062_by_hand(tmp_path):
    # GT 100x100, detection 100x62 inside it: IoU 0.62 passes thresholds .50, .55, .60 of ten.
    gt = _write_set(tmp_path, [(1, 200, 200)], [(1, 1, [10, 10, 100, 100])], [(1, "cat")])
    result = evaluate(FixedDetector([_det([[10, 10, 110, 72, 0.9, 0]])]), tmp_path / "images", gt, ["cat"])
    assert result.stats["AP50"] == pytest.approx(1.0)
    assert result.stats["AP75"] == pytest.approx(0.0)
    assert result.stats["AP"] == pytest.approx(0.3)
    assert result.images == 1 and result.detections == 1


def test_categories_are_matched_by_name():
    cats = [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
    mapping, unmatched = category_mapping(cats, ["Dog", "cat", "traffic_light"])
    assert mapping == {0: 18, 1: 17}
    assert unmatched == ["toothbrush"]


def test_matches_pycocotools_on_a_mixed_case(tmp_path):
    cats = [(17, "cat"), (18, "dog")]
    images = [(1, 320, 240), (2, 200, 300), (3, 128, 128)]
    anns = [
        (1, 17, [10, 20, 100, 80]),
        (1, 18, [150, 30, 60, 120]),
        (2, 18, [5, 5, 150, 250]),
        (2, 17, [40, 40, 30, 30]),
        (3, 17, [0, 0, 64, 64]),
    ]
    gt = _write_set(tmp_path, images, anns, cats)
    names = ["dog", "cat"]  # model ids: dog 0, cat 1 (COCO: cat 17, dog 18)
    detections = [
        _det([[12, 18, 108, 102, 0.95, 1], [150, 30, 212, 150, 0.8, 0], [140, 25, 215, 160, 0.3, 1]]),
        _det([[5, 10, 150, 250, 0.7, 0], [100, 100, 140, 140, 0.6, 1]]),  # a miss and a false positive
        _det([[2, 1, 60, 66, 0.5, 1], [0, 0, 64, 64, 0.4, 0]]),
    ]
    result = evaluate(FixedDetector(detections), tmp_path / "images", gt, names, batch=2)

    # Reference: the same detections as COCO results, written by hand, scored by pycocotools.
    to_coco = {0: 18, 1: 17}
    records = [
        {
            "image_id": image_id,
            "category_id": to_coco[int(c)],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(s),
        }
        for image_id, det in zip((1, 2, 3), detections, strict=True)
        for (x1, y1, x2, y2), s, c in zip(det.xyxy.tolist(), det.confidence, det.class_id, strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        ev = COCOeval(coco, coco.loadRes(records), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(list(result.stats.values()), ev.stats, rtol=1e-12)
    assert 0 < result.stats["AP"] < 1


def test_unknown_categories_are_left_out_and_listed(tmp_path):
    gt = _write_set(
        tmp_path,
        [(1, 100, 100)],
        [(1, 1, [10, 10, 50, 50]), (1, 2, [60, 60, 30, 30])],
        [(1, "cat"), (2, "unicorn")],
    )
    result = evaluate(FixedDetector([_det([[10, 10, 60, 60, 0.9, 0]])]), tmp_path / "images", gt, ["cat"])
    assert result.unmatched_categories == ["unicorn"]
    assert result.stats["AP"] == pytest.approx(1.0)


def test_no_detections_scores_zero(tmp_path):
    gt = _write_set(tmp_path, [(1, 100, 100)], [(1, 1, [10, 10, 50, 50])], [(1, "cat")])
    result = evaluate(FixedDetector([Detections.empty()]), tmp_path / "images", gt, ["cat"])
    assert result.stats["AP"] == 0 and result.detections == 0


def test_bad_inputs_fail_with_one_line(tmp_path):
    gt = _write_set(tmp_path, [(1, 100, 100)], [(1, 1, [10, 10, 50, 50])], [(1, "cat")])
    with pytest.raises(UsageError, match="no category name matches"):
        evaluate(FixedDetector([]), tmp_path / "images", gt, ["dog"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(UsageError, match="bad.json: not a COCO detection file"):
        evaluate(FixedDetector([]), tmp_path / "images", bad, ["cat"])
    with pytest.raises(UsageError, match="annotation file not found"):
        evaluate(FixedDetector([]), tmp_path / "images", tmp_path / "missing.json", ["cat"])


def _photos_dir(tmp_path: Path) -> Path:
    from trtdet_centernet.training.backgrounds import photo_paths

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in photo_paths():
        shutil.copy(path, folder / path.name)
    return folder


def test_cli_val_yolo_on_hand_labelled_photos(tmp_path):
    from trtdet.cli.main import cli

    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        cli,
        ["val", "--model", "yolo", "--images", str(_photos_dir(tmp_path)), "--annotations",
         str(DATA / "coco_photos.json"), "--json", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["images"] == 6 and metrics["unmatched_categories"] == []
    # YOLO11n (COCO val AP 0.39) on six easy photos: measured AP 0.58, AP50 0.70.
    assert 0.4 < metrics["AP"] < 0.8 and metrics["AP50"] > 0.6
    assert "AP " in result.output and "AP50" in result.output


def test_cli_val_shipped_centernet_on_held_out_scenes(tmp_path):
    from trtdet.cli.main import cli
    from trtdet_centernet.training.dataset import write_coco_dataset
    from trtdet_centernet.training.synthetic import SceneConfig

    gt = write_coco_dataset(tmp_path / "scenes", 12, 1000, SceneConfig(512, 512, jpeg_probability=0))
    result = CliRunner().invoke(
        cli,
        ["val", "--model", "centernet", "--images", str(gt.parent / "images"), "--annotations", str(gt),
         "--json", "-", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)  # with --json - stdout is the JSON alone
    assert result.stderr.splitlines()[-1].startswith("AP ")  # the AP line went to stderr
    # On the full 500-scene held-out set: AP 0.79, AP50 0.97 (docs/training.md).
    assert metrics["AP50"] > 0.85 and metrics["AP"] > 0.6


# -- hostile annotation files and missing images ------------------------------------------------


def _annotations(tmp_path: Path, data) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _valid() -> dict:
    return {
        "images": [{"id": 1, "file_name": "1.png", "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]}],
        "categories": [{"id": 1, "name": "cat"}],
    }


def _broken(change) -> dict:
    data = _valid()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (5, "top level: expected a JSON object, got int"),
        (None, "top level: expected a JSON object, got NoneType"),
        ([], "top level: expected a JSON object, got list"),
        (_broken(lambda d: d.pop("categories")), "categories: missing"),
        (_broken(lambda d: d.update(images={"id": 1})), "images: expected a list, got dict"),
        (_broken(lambda d: d["images"][0].pop("file_name")), "images[0].file_name: expected a file name, got None"),
        (_broken(lambda d: d["images"][0].update(id="1")), "images[0].id: expected an integer, got '1'"),
        (_broken(lambda d: d["images"][0].update(width=-3)), "images[0].width: expected a positive integer, got -3"),
        (_broken(lambda d: d["annotations"][0].update(bbox=["a", "b", "c", "d"])), "annotations[0].bbox: expected [x, y, width, height] numbers"),
        (_broken(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])), "annotations[0].bbox: expected [x, y, width, height] numbers"),
        (_broken(lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4])), "annotations[0].bbox: negative width or height"),
        (_broken(lambda d: d["annotations"][0].pop("image_id")), "annotations[0].image_id: expected an integer, got None"),
        (_broken(lambda d: d["annotations"][0].update(area="big")), "annotations[0].area: expected a number, got 'big'"),
        (_broken(lambda d: d["categories"][0].update(name=7)), "categories[0].name: expected a string, got 7"),
        (_broken(lambda d: d["annotations"].append(3)), "annotations[1]: expected an object, got int"),
    ],
)
def test_json_that_is_not_coco_is_one_line_naming_the_field(tmp_path, data, field):
    (tmp_path / "images").mkdir()
    path = _annotations(tmp_path, data)
    with pytest.raises(UsageError) as info:
        evaluate(FixedDetector([]), tmp_path / "images", path, ["cat"])
    message = str(info.value)
    assert message.startswith(f"{path}: not a COCO detection file (") and field in message and "\n" not in message


def test_deeply_nested_json_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match=r"deep\.json: not a readable JSON file"):
        evaluate(FixedDetector([]), tmp_path / "images", path, ["cat"])


def test_an_empty_set_has_nothing_to_score(tmp_path):
    (tmp_path / "images").mkdir()
    path = _annotations(tmp_path, {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]})
    with pytest.raises(UsageError, match="lists no images: nothing to score"):
        evaluate(FixedDetector([]), tmp_path / "images", path, ["cat"])


def test_a_missing_image_is_reported_and_scored_as_no_detections(tmp_path):
    """Two images, one box each; the detector finds image 1's exactly; image 2 is missing: the
    score is what pycocotools gives for one found box of two ground-truth boxes."""
    gt = _write_set(tmp_path, [(1, 100, 100), (2, 100, 100)], [(1, 1, [10, 10, 50, 50]), (2, 1, [20, 20, 40, 40])],
                    [(1, "cat")])
    (tmp_path / "images" / "2.png").unlink()
    detector = FixedDetector([_det([[10, 10, 60, 60, 0.9, 0]])])
    result = evaluate(detector, tmp_path / "images", gt, ["cat"])
    assert result.failed == [f"{tmp_path / 'images' / '2.png'}: cannot read image listed in the annotations (file not found)"]
    assert result.images == 2 and result.detections == 1
    coco = COCO()
    coco.dataset = json.loads(gt.read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dt = coco.loadRes([{"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 50.0], "score": 0.9}])
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert result.stats["AP50"] == pytest.approx(ev.stats[1]) and 0.4 < result.stats["AP50"] < 0.6


def test_a_detection_failure_fails_only_its_image(tmp_path):
    gt = _write_set(tmp_path, [(1, 100, 100), (2, 100, 100), (3, 100, 100)], [(1, 1, [10, 10, 50, 50])], [(1, "cat")])
    calls = []

    def detect(images):
        calls.append(len(images))
        if len(images) > 1 or len(calls) == 3:  # the batch fails, then image 2 alone
            raise ValueError("model exploded")
        return [_det([[10, 10, 60, 60, 0.9, 0]])]

    result = evaluate(detect, tmp_path / "images", gt, ["cat"], batch=3)
    assert calls == [3, 1, 1, 1]
    assert result.failed == [f"{tmp_path / 'images' / '2.png'}: detection failed: model exploded"]
    assert result.detections == 2


def test_cli_val_with_a_missing_image_exits_2_and_still_scores(tmp_path, photos):
    from trtdet.cli.main import cli

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos["chelsea"], folder / "chelsea.png")
    h, w = cv2.imread(str(photos["chelsea"])).shape[:2]
    data = {"images": [{"id": 1, "file_name": "chelsea.png", "width": w, "height": h},
                       {"id": 2, "file_name": "gone.png", "width": w, "height": h}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 17, "bbox": [140, 20, 300, 280]}],
            "categories": [{"id": 17, "name": "cat"}]}
    gt = _annotations(tmp_path, data)
    result = CliRunner().invoke(cli, ["val", "--model", "yolo", "--images", str(folder), "--annotations", str(gt), "-q"])
    assert result.exit_code == 2, result.output
    assert f"error: {folder / 'gone.png'}: cannot read image listed in the annotations (file not found)" in result.stderr
    assert "AP " in result.stdout and "1 image(s) failed" in result.stderr


def test_cli_val_with_a_corrupt_jpeg_warns_in_one_line_and_still_scores_it(tmp_path, photos):
    from tests.corrupt_jpeg import encoded, libjpeg_verdict, truncated_scan
    from trtdet.cli.main import cli

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "rotten.jpg").write_bytes(truncated_scan(encoded(photos["chelsea"])))
    assert libjpeg_verdict(folder / "rotten.jpg").corrupt
    h, w = cv2.imread(str(photos["chelsea"])).shape[:2]
    data = {"images": [{"id": 1, "file_name": "rotten.jpg", "width": w, "height": h}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 17, "bbox": [140, 20, 300, 280]}],
            "categories": [{"id": 17, "name": "cat"}]}
    result = CliRunner().invoke(cli, ["val", "--model", "yolo", "--images", str(folder),
                                      "--annotations", str(_annotations(tmp_path, data)), "-q"])
    assert result.exit_code == 0, result.output  # a warning is not a failure
    warnings = [line for line in result.stderr.splitlines() if "corrupt JPEG" in line]
    assert warnings == [f"warning: {folder / 'rotten.jpg'}: corrupt JPEG data (premature end of data segment); "
                        "decoded anyway, parts of the image may be gray"]
    assert "AP " in result.stdout


@pytest.mark.parametrize("escape", ["../secret/chelsea.png", "sub/../../secret/chelsea.png", "ABSOLUTE"])
def test_val_refuses_annotations_naming_files_outside_the_images_folder(tmp_path, photos, escape):
    """An annotation file must not make val read (score, and name in its errors) files elsewhere."""
    from trtdet.cli.main import cli

    folder, secret = tmp_path / "images", tmp_path / "secret"
    (folder / "sub").mkdir(parents=True)
    secret.mkdir()
    shutil.copy(photos["chelsea"], secret / "chelsea.png")
    shutil.copy(photos["chelsea"], folder / "inside.png")
    name = str(secret / "chelsea.png") if escape == "ABSOLUTE" else escape
    assert (folder / name).is_file()  # the file is there to be read: only the check stops it
    h, w = cv2.imread(str(photos["chelsea"])).shape[:2]
    data = {"images": [{"id": 1, "file_name": "sub/../inside.png", "width": w, "height": h},  # stays inside: fine
                       {"id": 2, "file_name": name, "width": w, "height": h}],
            "annotations": [{"id": 1, "image_id": 2, "category_id": 17, "bbox": [140, 20, 300, 280]}],
            "categories": [{"id": 17, "name": "cat"}]}
    gt = _annotations(tmp_path, data)
    result = CliRunner().invoke(cli, ["val", "--model", "yolo", "--images", str(folder), "--annotations", str(gt), "-q"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {gt}: images[1].file_name {name!r} leads outside the --images folder "
        "(absolute, or climbing out with '..'); val reads only images below it"
    ]
    with pytest.raises(UsageError, match="leads outside the --images folder"):
        evaluate(lambda images: [], folder, gt, ["cat"])


# -- --keep-res pads to the model's declared input multiple --------------------------------------


def test_keep_res_pads_each_image_to_the_models_input_multiple(tmp_path, monkeypatch):
    """A model declaring ``input_multiple=48``: a 100x70 (WxH) image runs at 96x144 (HxW), a 48x48 one
    at 48x48 -- sizes worked out by hand: ceil(70/48)*48 = 96, ceil(100/48)*48 = 144."""
    import dataclasses

    import trtdet.plugins
    from trtdet.cli.main import cli

    gt = _write_set(tmp_path, [(1, 100, 70), (2, 48, 48)], [(1, 1, [10, 10, 20, 20])], [(1, "person")])
    model = SimpleNamespace(spec=dataclasses.replace(trtdet.plugins.get_model("yolo").spec, input_multiple=48))
    monkeypatch.setattr(trtdet.plugins, "get_model", lambda name: model)
    sizes = []

    class SizedDetector:
        class_names = ("person",)

        def __init__(self, size):
            self.spec = dataclasses.replace(model.spec, input_size=size or model.spec.input_size)

        def __call__(self, images):
            sizes.append((self.spec.input_size, images[0].shape[:2]))
            return [Detections.empty() for _ in images]

    monkeypatch.setattr("trtdet.cli.val.load_detector", lambda name, options: SizedDetector(options.input_size))
    result = CliRunner().invoke(cli, ["val", "-m", "yolo", "--images", str(tmp_path / "images"),
                                      "--annotations", str(gt), "--keep-res", "-q"])
    assert result.exit_code == 0, result.output
    assert sizes == [((96, 144), (70, 100)), ((48, 48), (48, 48))]


def test_keep_res_needs_a_declared_input_multiple(tmp_path, monkeypatch):
    import dataclasses

    import trtdet.plugins
    from trtdet.cli.main import cli

    gt = _write_set(tmp_path, [(1, 100, 70)], [], [(1, "person")])
    model = SimpleNamespace(spec=dataclasses.replace(trtdet.plugins.get_model("yolo").spec, input_multiple=None))
    monkeypatch.setattr(trtdet.plugins, "get_model", lambda name: model)
    result = CliRunner().invoke(cli, ["val", "-m", "yolo", "--images", str(tmp_path / "images"),
                                      "--annotations", str(gt), "--keep-res", "-q"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --keep-res: model 'yolo' declares no input_multiple (the multiple its "
                                     "input's height and width must be), so there is no size to pad to")


def test_the_shipped_models_declare_their_input_multiple():
    """The trunk's downsampling, not CenterNet's output stride (4)."""
    import trtdet.plugins

    for name in ("yolo", "rtdetr", "centernet"):
        assert trtdet.plugins.get_model(name).spec.input_multiple == 32, name
    assert trtdet.plugins.get_model("centernet").spec.stride == 4
