"""Class names saved in a checkpoint travel into the export and the torch backend."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from trtdet.errors import ModelError
from trtdet_centernet.checkpoint import load_checkpoint
from trtdet_centernet.export import export_onnx
from trtdet_centernet.network import build_centernet


def _save(path, num_classes: int, names):
    model = build_centernet(18, num_classes)
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "class_names": names}, path)
    return path


def test_names_reach_the_onnx_metadata(tmp_path):
    ckpt = _save(tmp_path / "shapes.pth", 2, ["circle", "star"])
    assert load_checkpoint(ckpt)[1].class_names == ("circle", "star")
    out = export_onnx(ckpt, tmp_path / "shapes.onnx", input_size=(64, 64))
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["names"]) == ["circle", "star"]


def test_name_count_must_match_the_head(tmp_path):
    ckpt = _save(tmp_path / "bad.pth", 2, ["circle", "star", "ring"])
    with pytest.raises(ModelError, match=r"bad\.pth: checkpoint lists 3 class names but its hm head has 2 classes"):
        load_checkpoint(ckpt)
