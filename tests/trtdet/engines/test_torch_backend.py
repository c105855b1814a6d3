"""The torch engine backend on the CPU: a CenterNet checkpoint run natively equals its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

import trtdet
from trtdet.io.images import read_image

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from trtdet_centernet.network import build_centernet

    torch.manual_seed(3)
    model = build_centernet(18, num_classes=3).eval()
    with torch.no_grad():  # give the heads some spread so several peaks clear the threshold
        model.hm[-1].bias.normal_(0, 1.0)
        model.wh[-1].weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "resdcn18_3cls.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_checkpoint_on_torch_equals_its_onnx_export_on_onnxruntime(checkpoint, photos):
    image = read_image(photos["coffee"])
    native = trtdet.load("centernet", weights=checkpoint, backend="torch", input_size=(128, 128), conf=0.05)
    exported = trtdet.load("centernet", weights=checkpoint, backend="onnxruntime", input_size=(128, 128), conf=0.05)
    assert native.backend == "torch" and exported.backend == "onnxruntime"
    assert native.class_names == exported.class_names and len(native.class_names) == 3
    a, b = native(image), exported(image)
    assert len(a) > 0 and len(a) == len(b)
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_torch_backend_refuses_engine_files(tmp_path):
    from trtdet.errors import UsageError

    (tmp_path / "x.engine").write_bytes(b"\0" * 16)
    with pytest.raises(UsageError, match="backend 'torch' cannot load engine files"):
        trtdet.load("yolo", engine=tmp_path / "x.engine", backend="torch")
