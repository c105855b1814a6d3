"""Training smoke test on the CPU: a few steps on tiny scenes, the loss must fall.

Also checks the checkpoint round trip (fp16 parts -> upstream layout the CenterNet plugin
loads) and the shipped-ONNX conversion (fp16 weights, fp32 I/O) against the torch model.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from trtdet_centernet.checkpoint import build_from_checkpoint
from trtdet_centernet.training import train as train_module
from trtdet_centernet.training.synthetic import CLASS_NAMES
from trtdet_centernet.training.train import join_parts, learning_rate, parse_args


def test_learning_rate_schedule():
    assert learning_rate(0.0, 1e-3, warmup=0.1) == pytest.approx(1e-5)
    assert learning_rate(0.05, 1e-3, warmup=0.1) == pytest.approx(5e-4)
    assert learning_rate(0.1, 1e-3, warmup=0.1) == pytest.approx(1e-3)
    assert learning_rate(0.55, 1e-3, warmup=0.1) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert learning_rate(1.0, 1e-3, warmup=0.1) == pytest.approx(1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    torch.manual_seed(0)
    args = parse_args(
        [
            "--out", str(out), "--device", "cpu", "--input-size", "64", "--min-size", "14", "--max-size", "40",
            "--batch", "4", "--steps", "40", "--lr", "1e-3", "--warmup", "0.05", "--workers", "0",
            "--log-every", "1", "--split-mb", "10",
        ]
    )  # fmt: skip
    summary = train_module.train(args)
    return out, summary


@pytest.mark.slow
def test_cpu_training_loss_falls(trained):
    out, summary = trained
    losses = summary["loss_history"]
    assert summary["steps"] == 40 and len(losses) == 40
    # From the focal-loss prior (~5) the heatmap loss halves within these few steps.
    assert np.mean(losses[-8:]) < 0.75 * losses[0], losses
    assert np.mean(losses[-8:]) < np.mean(losses[1:9]), losses
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))


@pytest.mark.slow
def test_checkpoint_parts_load_as_an_upstream_checkpoint(trained, tmp_path):
    out, summary = trained
    assert len(summary["checkpoint"]) == 3  # ~28 MiB of fp16 in 10 MiB parts
    ckpt = join_parts(out / "centernet_shapes.pth.part00", tmp_path / "ckpt.pth")
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "state_dict", "class_names"} and raw["epoch"] == 40
    assert raw["class_names"] == list(CLASS_NAMES)
    assert raw["state_dict"]["hm.2.weight"].dtype == torch.float16
    model, num_classes, depth = build_from_checkpoint(ckpt)
    assert (num_classes, depth) == (len(CLASS_NAMES), 18)


@pytest.mark.slow
def test_shipped_onnx_has_fp16_weights_and_matches_torch(trained, tmp_path):
    from trtdet_centernet.training.ship import ship

    out, _ = trained
    ckpt = join_parts(out / "centernet_shapes.pth.part00", tmp_path / "ckpt.pth")
    path = ship(ckpt, tmp_path / "shipped.onnx", input_size=(64, 64))
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["names"]) == list(CLASS_NAMES)
    big = [i for i in proto.graph.initializer if np.prod(i.dims) >= 16]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    model, _, _ = build_from_checkpoint(ckpt)
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert path.stat().st_size < 0.55 * fp32_bytes  # half the fp32 size, plus graph and metadata
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    got = session.run(None, {"images": x.numpy()})[0]
    # The checkpoint already holds fp16-rounded weights, so only fp32 arithmetic differs.
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=2e-3)


@pytest.mark.gpu
def test_cuda_training_steps_with_fp16_autocast(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    args = parse_args(
        ["--out", str(tmp_path), "--device", "cuda", "--input-size", "128", "--batch", "16", "--steps", "30",
         "--workers", "2", "--log-every", "1", "--warmup", "0.1"]
    )  # fmt: skip
    summary = train_module.train(args)
    losses = summary["loss_history"]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < 0.75 * losses[0], losses


def test_evaluation_runs_the_in_training_network_through_the_real_detector():
    """The held-out evaluation uses trtdet's own pipeline: it equals decoding the network's output by hand."""
    from trtdet.pipeline import Detector
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet_centernet.constants import MEAN, STD
    from trtdet_centernet.decode import decode_centernet
    from trtdet_centernet.network import build_centernet

    torch.manual_seed(4)
    model = build_centernet(18, num_classes=len(CLASS_NAMES), head_conv=64).eval()
    with torch.no_grad():
        model.hm[-1].bias.normal_(0, 1.0)
    images = [np.random.default_rng(i).integers(0, 256, (50 + 10 * i, 70, 3), dtype=np.uint8) for i in range(3)]
    with train_module.evaluation_detector(model, (64, 64), torch.device("cpu"), batch=2) as detector:
        assert isinstance(detector, Detector) and detector.class_names == tuple(CLASS_NAMES)
        got = detector(images)
    batch = WarpAffinePreprocessor((64, 64), mean=MEAN, std=STD, channel_order="BGR", border_value=0)(images)
    with torch.no_grad():
        output = model(torch.from_numpy(batch.tensor)).numpy()
    want = decode_centernet(output, batch.transforms, input_size=(64, 64), num_classes=len(CLASS_NAMES), k=100,
                            threshold=0.0)
    assert sum(len(d) for d in want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
