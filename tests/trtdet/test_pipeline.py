"""The Detector: one image vs a list, detect(many) batching, the engine lifecycle, the failure policy.

Runs the fake model of ``fake_model.py`` (hand-computable stages) through the real core
pipeline, ``trtdet.load`` and ``trtdet run``; the real YOLO11n checks that batching gives
each image the result it gets alone.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import trtdet
from trtdet.cli.main import cli

from .fake_model import NAME, POISON, fake_model, image


@pytest.fixture
def fake(tmp_path):
    with fake_model(tmp_path) as plugin:
        yield plugin


def _same(a: trtdet.Detections, b: trtdet.Detections) -> bool:
    return (
        len(a) == len(b)
        and np.allclose(a.xyxy, b.xyxy, atol=1e-4)
        and np.allclose(a.confidence, b.confidence, atol=1e-5)
        and np.array_equal(a.class_id, b.class_id)
    )


def test_one_image_gives_detections_a_list_gives_a_list(fake):
    with trtdet.load(NAME, backend="fake") as detector:
        one = detector(image(51))
        assert isinstance(one, trtdet.Detections)
        # Hand-computed: mean 51/255 = 0.2 -> box [0, 0, 1.6, 1.6], score 0.2 (8x8: identity transform).
        np.testing.assert_allclose(one.xyxy, [[0, 0, 1.6, 1.6]], atol=1e-5)
        np.testing.assert_allclose(one.confidence, [0.2], atol=1e-6)
        many = detector([image(51), image(102)])
        assert isinstance(many, list) and len(many) == 2
        assert _same(many[0], one)
        np.testing.assert_allclose(many[1].confidence, [0.4], atol=1e-6)
        assert detector([]) == []
        assert isinstance(detector((image(51),)), list)  # any sequence is "many"


@pytest.mark.parametrize("batch", [1, 3, 4])
def test_detect_many_is_batched_and_matches_each_image_alone(fake, batch):
    values = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    with trtdet.load(NAME, backend="fake", batch=batch) as detector:
        alone = [detector(image(v)) for v in values]
        engine = fake.backend.engines[-1]
        engine.calls.clear()
        together = detector([image(v) for v in values])
    assert engine.calls == [min(batch, len(values) - start) for start in range(0, len(values), batch)]
    assert all(_same(a, b) for a, b in zip(alone, together, strict=True))


def test_batching_on_the_real_yolo_matches_per_image_results(photos):
    images = [cv2.imread(str(photos[name])) for name in ("grace_hopper", "astronaut", "coffee", "chelsea", "camera")]
    # square: with the yolo default, rect, a batch of mixed shapes runs 640x640 while an image
    # alone runs its stride-padded size -- Ultralytics' same_shapes rule, results differ as there
    with trtdet.load("yolo", batch=3, letterbox="square") as detector:
        alone = [detector(im) for im in images]
        together = detector(images)
    assert sum(len(d) for d in alone) > 0
    assert all(_same(a, b) for a, b in zip(alone, together, strict=True))


def test_the_detector_activates_its_engine_and_deactivates_it_on_close(fake):
    detector = trtdet.load(NAME, backend="fake")
    engine = fake.backend.engines[-1]
    assert engine.is_active and engine.activations == 1
    detector.close()
    assert not engine.is_active
    with pytest.raises(RuntimeError, match="not active"):
        engine(np.zeros((1, 3, 8, 8), np.float32))
    with trtdet.load(NAME, backend="fake") as again:
        assert again.engine.is_active
    assert not again.engine.is_active


def test_a_failing_image_raises_its_own_error_from_detect_many(fake):
    with trtdet.load(NAME, backend="fake", batch=4) as detector:
        with pytest.raises(ValueError, match="poisoned batch"):
            detector([image(10), image(POISON), image(30)])
        # The detector is usable afterwards, and the good images decode as before.
        assert len(detector([image(10), image(30)])) == 2


def test_submit_fails_only_the_bad_image(fake):
    with trtdet.load(NAME, backend="fake", batch=4) as detector:
        futures = [detector.submit(image(v)) for v in (10, 20, POISON, 40, 50)]
        with pytest.raises(ValueError, match="poisoned batch"):
            futures[2].result(timeout=30)
        for v, future in zip((10, 20, 40, 50), futures[:2] + futures[3:], strict=True):
            np.testing.assert_allclose(future.result(timeout=30).confidence, [v / 255], atol=1e-6)


def test_cli_run_fails_only_the_bad_image_of_a_batch(fake, tmp_path):
    """The same policy as submit(): the poisoned image's batch-mates still get their detections."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, value in (("a", 10), ("b", POISON), ("c", 30), ("d", 40), ("e", 50)):
        cv2.imwrite(str(folder / f"{name}.png"), image(value))
    (folder / "f_broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(cli, ["run", "-m", NAME, "--backend", "fake", "-s", str(folder), "--batch", "4",
                                      "--json", "-", "-q"])
    assert result.exit_code == 2, result.output
    rows = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line) for line in result.stdout.splitlines()}
    assert list(rows) == ["a.png", "b.png", "c.png", "d.png", "e.png", "f_broken.png"]  # in order
    assert rows["b.png"]["error"].endswith("b.png: detection failed: poisoned batch")
    assert rows["b.png"]["detections"] == []
    assert "not a readable image" in rows["f_broken.png"]["error"]
    for name, value in (("a", 10), ("c", 30), ("d", 40), ("e", 50)):
        row = rows[f"{name}.png"]
        assert row["error"] is None
        assert [d["score"] for d in row["detections"]] == [round(value / 255, 4)]
    assert "2 input(s) failed" in result.stderr
