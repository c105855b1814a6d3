"""The plugin's registrations, and a full CPU run through ``trtdet.load`` on an exported model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch

from trtdet.coco import COCO_NAMES
from trtdet.errors import ModelError
from trtdet_centernet.decode import CenterNetDecoder

from . import upstream_reference as upstream
from .conftest import SIZE


def test_model_is_registered_with_upstream_preprocessing(centernet_plugin):
    from trtdet.plugins import get_model

    spec = get_model("centernet").spec
    assert spec.class_names == COCO_NAMES and spec.input_size == (512, 512)
    assert spec.channel_order == "BGR" and spec.border_value == 0 and spec.stride == 4
    assert spec.mean == (0.40789654, 0.44719302, 0.47026115)
    assert spec.std == (0.28863828, 0.27408164, 0.27809835)
    assert spec.num_channels == 164 and spec.max_detections == 100 and spec.iou_threshold is None
    assert spec.exporter is not None and spec.onnx_converter is not None


def test_decoder_factory_takes_classes_and_thresholds_from_the_spec(centernet_plugin):
    from trtdet.context import RunContext
    from trtdet.plugins import get_model

    spec = dataclasses.replace(
        centernet_plugin.CENTERNET, class_names=("a", "b", "c"), input_size=(64, 96), conf_threshold=0.05
    )
    decoder = centernet_plugin.CENTERNET_MODEL.make_decoder(spec, RunContext.of("cpu"))
    assert isinstance(decoder, CenterNetDecoder)
    assert (decoder.num_classes, decoder.input_size, decoder.threshold, decoder.k) == (3, (64, 96), 0.05, 100)
    assert get_model("centernet").model is centernet_plugin.CENTERNET_MODEL  # the registered object
    yolo = get_model("yolo")
    assert not isinstance(yolo.model.make_decoder(yolo.spec, RunContext.of("cpu")), CenterNetDecoder)


def test_torch_model_builds_the_checkpoint_network(
    centernet_plugin, official_checkpoint, upstream_model, image_batch
):
    module = centernet_plugin.CENTERNET.torch_model(official_checkpoint)
    with torch.no_grad():
        got = module(image_batch)
        expected = upstream.deployment_output(upstream_model(image_batch)[-1])
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4


def test_default_model_and_sample_image(centernet_plugin, monkeypatch, tmp_path):
    monkeypatch.setattr(centernet_plugin, "DEFAULT_MODEL", tmp_path / "centernet.onnx")
    monkeypatch.setattr(centernet_plugin, "SAMPLE_IMAGE", tmp_path / "sample.jpg")
    with pytest.raises(ModelError, match="no default model is shipped; pass --weights CKPT or --onnx F"):
        centernet_plugin.default_model_path()
    assert centernet_plugin.sample_image_path() is None
    (tmp_path / "centernet.onnx").write_bytes(b"x")
    assert centernet_plugin.default_model_path() == tmp_path / "centernet.onnx"


def test_running_onnx_does_not_import_torch():
    code = (
        "import sys; import trtdet_centernet.plugin, trtdet_centernet.decode, trtdet_centernet.legacy; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _reference_detections(onnx_path, image, threshold):
    """cv2 letterbox + ONNX Runtime + upstream ctdet_decode, boxes mapped back by hand."""
    import onnxruntime as ort

    h, w = image.shape[:2]
    s = min(SIZE / w, SIZE / h)
    matrix = np.array([[s, 0, (SIZE - s * w) / 2 + s / 2 - 0.5], [0, s, (SIZE - s * h) / 2 + s / 2 - 0.5]])
    warped = cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    mean = np.array([0.40789654, 0.44719302, 0.47026115], np.float32)
    std = np.array([0.28863828, 0.27408164, 0.27809835], np.float32)
    x = ((warped.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    cells = SIZE // 4
    maps = torch.from_numpy(out[0].T.reshape(-1, cells, cells))[None]
    with torch.no_grad():
        dets = upstream.ctdet_decode(maps[:, 4:84].sigmoid(), maps[:, 2:4], maps[:, 0:2], K=100)[0].numpy()
    dets = dets[dets[:, 4] > threshold]
    boxes = dets[:, :4] * 4
    boxes[:, 0::2] = ((boxes[:, 0::2] - (SIZE - s * w) / 2) / s).clip(0, w)
    boxes[:, 1::2] = ((boxes[:, 1::2] - (SIZE - s * h) / 2) / s).clip(0, h)
    return boxes, dets[:, 4], dets[:, 5].astype(int)


def test_trtdet_load_runs_an_exported_checkpoint_on_cpu(centernet_plugin, exported_onnx, photos):
    import trtdet.api

    image = cv2.imread(str(photos["grace_hopper"]))
    detector = trtdet.api.load("centernet", onnx=exported_onnx, conf=0.2)
    det = detector(image)
    boxes, scores, classes = _reference_detections(exported_onnx, image, 0.2)
    assert len(det) == len(scores) > 0
    np.testing.assert_allclose(det.confidence, scores, rtol=1e-4)
    np.testing.assert_array_equal(det.class_id, classes)
    np.testing.assert_allclose(det.xyxy, boxes, atol=0.05)


def test_wrong_channel_count_for_the_classes_is_one_clear_line(centernet_plugin, exported_onnx, tmp_path):
    import trtdet.api

    model = onnx.load(str(exported_onnx))
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = json.dumps(["cat", "dog"])
    path = tmp_path / "two_names.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as exc:
        trtdet.api.load("centernet", onnx=path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "has 164 channels, expected 8 = 4 + 2 x 2 classes" in message


def test_cli_run_with_a_checkpoint_exports_once_and_detects(
    centernet_plugin, official_checkpoint, exported_onnx, photos, isolated_cache
):
    from click.testing import CliRunner

    import trtdet.api
    from trtdet.cli.main import cli

    photo = photos["chelsea"]
    args = [
        "run",
        "--model",
        "centernet",
        "--weights",
        str(official_checkpoint),
        "--input-size",
        str(SIZE),
        str(SIZE),
    ]
    args += ["--source", str(photo), "--conf", "0.2", "--json", "-", "--quiet"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    exports = sorted((isolated_cache / "exports").glob("centernet-*.onnx"))
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert exports[0].stat().st_mtime_ns == stamp  # the cached export is reused

    (record,) = [json.loads(line) for line in first.output.splitlines() if line.startswith("{")]
    expected = trtdet.api.load("centernet", onnx=exported_onnx, conf=0.2)(cv2.imread(str(photo)))
    assert record["error"] is None and len(record["detections"]) == len(expected) > 0
    for got, want in zip(record["detections"], expected.to_records(COCO_NAMES), strict=True):
        assert got["class_id"] == want["class_id"] and got["label"] == want["label"]
        np.testing.assert_allclose(got["box"], want["box"], atol=0.02)
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
