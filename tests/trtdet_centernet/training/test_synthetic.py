"""The procedural scene generator: deterministic, boxes tight around what is drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from trtdet_centernet.training import synthetic
from trtdet_centernet.training.backgrounds import load_backgrounds, pack_backgrounds
from trtdet_centernet.training.dataset import SyntheticDetection, write_coco_dataset
from trtdet_centernet.training.synthetic import CLASS_NAMES, SceneConfig, generate_scene


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return load_backgrounds()


def test_backgrounds_are_real_photos(photos):
    assert len(photos) >= 10
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos)
    assert all(p.std() > 10 for p in photos)  # textured photos, not flat fills


def test_packed_backgrounds_match_the_package_files(tmp_path, photos):
    packed = load_backgrounds(pack_backgrounds(tmp_path / "bg.npz"))
    assert len(packed) == len(photos)
    assert all(np.array_equal(a, b) for a, b in zip(packed, photos, strict=True))


def test_scene_is_a_pure_function_of_seed_and_index(photos):
    cfg = SceneConfig(96, 128)
    a, b = generate_scene(3, 5, photos, cfg), generate_scene(3, 5, photos, cfg)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.class_ids, b.class_ids)
    c = generate_scene(3, 6, photos, cfg)
    assert not np.array_equal(a.image, c.image)


def test_scenes_have_valid_boxes_and_classes(photos):
    cfg = SceneConfig(128, 160)
    counts = np.zeros(len(CLASS_NAMES), int)
    for i in range(40):
        scene = generate_scene(0, i, photos, cfg)
        assert scene.image.shape == (128, 160, 3) and scene.image.dtype == np.uint8
        assert len(scene.boxes) >= 1
        b = scene.boxes
        assert (
            np.all(b[:, 0] >= 0)
            and np.all(b[:, 1] >= 0)
            and np.all(b[:, 2] <= 160)
            and np.all(b[:, 3] <= 128)
        )
        assert np.all(b[:, 2] - b[:, 0] > 4) and np.all(b[:, 3] - b[:, 1] > 4)
        counts += np.bincount(scene.class_ids, minlength=len(CLASS_NAMES))
    assert np.all(counts > 0)  # every class appears


@pytest.mark.parametrize("seed", range(12))
def test_box_is_tight_around_the_rendered_shape(seed):
    rng = np.random.default_rng(seed)
    cfg = SceneConfig(200, 200)
    _cls, outer, hole, box = synthetic._place(cfg, rng, 60.0)
    mask = synthetic._mask(outer, hole, 0, 0, 200, 200)
    ys, xs = np.nonzero(mask > 127)
    # Pixels more than half covered span [min, max + 1] in edge coordinates. cv2's
    # anti-aliased fill draws polygons ~0.7 px fatter on every side (measured: a 40 px
    # square at 10.3..50.3 covers 9.63..51.0), so the box sits within 1.5 px of them.
    drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(drawn, box, atol=1.5)


def test_torch_dataset_items(photos):
    ds = SyntheticDetection(0, 10, SceneConfig(64, 64), stride=4, max_objects=8, photos=photos)
    item = ds[3]
    assert item["image"].shape == (64, 64, 3)
    assert item["hm"].shape == (len(CLASS_NAMES), 16, 16)
    n = int(item["mask"].sum())
    assert n == len(generate_scene(0, 3, photos, SceneConfig(64, 64)).boxes)
    assert np.isclose(item["hm"].max(), 1.0)
    assert int((item["hm"] == 1).sum()) <= n  # one peak per object (coincident centres merge)


def test_written_coco_dataset_loads_in_pycocotools(tmp_path, photos):
    cfg = SceneConfig(64, 96)
    path = write_coco_dataset(tmp_path, 4, 7, cfg)
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        assert (tmp_path / "images" / info["file_name"]).is_file()
        scene = generate_scene(7, image_id - 1, photos, cfg)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        xywh = np.array([a["bbox"] for a in anns])
        np.testing.assert_allclose(xywh[:, :2], scene.boxes[:, :2], atol=0.01)
        np.testing.assert_allclose(xywh[:, 2:] + xywh[:, :2], scene.boxes[:, 2:], atol=0.02)
        assert [a["category_id"] - 1 for a in anns] == scene.class_ids.tolist()
    assert json.loads(path.read_text())["images"][0]["width"] == 96
