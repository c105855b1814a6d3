"""Checkpoint loading: official layouts load, everything else fails with one clear line."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from trtdet.errors import ModelError
from trtdet_centernet.checkpoint import build_from_checkpoint, load_checkpoint


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_official_checkpoint_loads(official_checkpoint, upstream_model):
    state, info = load_checkpoint(official_checkpoint)
    assert (info.depth, info.num_classes, info.head_conv, info.epoch) == (18, 80, 64, 70)
    assert not any(k.startswith("module.") for k in state)
    model, num_classes, depth = build_from_checkpoint(official_checkpoint)
    assert (num_classes, depth) == (80, 18)
    assert not model.training
    for key, value in upstream_model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize(("depth", "num_classes"), [(34, 3), (50, 20)])
def test_depth_and_classes_are_inferred(tmp_path, depth, num_classes):
    from . import upstream_reference as upstream

    net = upstream.get_pose_net(depth, {"hm": num_classes, "wh": 2, "reg": 2})
    path = tmp_path / "bare.pth"
    torch.save(net.state_dict(), path)  # a bare state dict, no "module." prefix
    _, info = load_checkpoint(path)
    assert (info.depth, info.num_classes, info.epoch) == (depth, num_classes, None)


def _official_state(upstream_model) -> dict:
    return {k: v.clone() for k, v in upstream_model.state_dict().items()}


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path, upstream_model):
    state = _official_state(upstream_model)
    del state["layer2.0.bn1.running_mean"]
    state["extra.weight"] = torch.zeros(1)
    state["wh.2.bias"] = torch.zeros(5)
    path = tmp_path / "broken.pth"
    torch.save({"epoch": 1, "state_dict": state}, path)
    with pytest.raises(ModelError) as exc:
        build_from_checkpoint(path)
    message = _one_line(exc, path)
    assert "missing keys: layer2.0.bn1.running_mean" in message
    assert "unexpected keys: extra.weight" in message
    assert "mis-shaped keys: wh.2.bias (5,) != (2,)" in message


def test_long_key_lists_are_truncated(tmp_path, upstream_model):
    state = {
        k: v
        for k, v in _official_state(upstream_model).items()
        if not k.startswith(("deconv_layers.4.", "deconv_layers.7."))
    }
    path = tmp_path / "short.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ModelError, match=r"missing keys: .*\(\+\d+ more\)") as exc:
        build_from_checkpoint(path)
    _one_line(exc, path)


def test_truncated_file(tmp_path, official_checkpoint):
    data = official_checkpoint.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="truncated or corrupt") as exc:
        load_checkpoint(path)
    _one_line(exc, path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty file"):
        load_checkpoint(empty)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a PyTorch checkpoint") as exc:
        load_checkpoint(text)
    _one_line(exc, text)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    with pytest.raises(ModelError, match="not a PyTorch checkpoint") as exc:
        load_checkpoint(plain)
    _one_line(exc, plain)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ModelError, match="expected a dict with a 'state_dict', got list") as exc:
        load_checkpoint(listing)
    _one_line(exc, listing)


def test_yolo_state_dict_is_named(tmp_path):
    path = tmp_path / "yolov8n_state.pth"
    torch.save(
        {"model.0.conv.weight": torch.zeros(16, 3, 3, 3), "model.22.cv2.0.0.conv.weight": torch.zeros(1)},
        path,
    )
    with pytest.raises(ModelError, match="looks like YOLO weights") as exc:
        load_checkpoint(path)
    _one_line(exc, path)


class _FakeDetectionModel:
    """Pickles as ``ultralytics.nn.tasks.DetectionModel``, like a real Ultralytics .pt file."""


_FakeDetectionModel.__module__ = "ultralytics.nn.tasks"
_FakeDetectionModel.__qualname__ = _FakeDetectionModel.__name__ = "DetectionModel"


def test_ultralytics_checkpoint_is_named_and_not_unpickled(tmp_path, monkeypatch):
    """An Ultralytics .pt pickles its model class; the loader names it instead of importing it."""
    tasks = types.ModuleType("ultralytics.nn.tasks")
    tasks.DetectionModel = _FakeDetectionModel
    for name in ("ultralytics", "ultralytics.nn"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "ultralytics.nn.tasks", tasks)
    path = tmp_path / "yolo11n.pt"
    torch.save({"epoch": -1, "model": _FakeDetectionModel(), "train_args": {}}, path)
    monkeypatch.delitem(sys.modules, "ultralytics.nn.tasks")  # as on a machine without ultralytics
    with pytest.raises(ModelError, match="Ultralytics YOLO checkpoint") as exc:
        load_checkpoint(path)
    _one_line(exc, path)


class _Payload:
    """Unpickling this runs ``exec`` -- a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, container):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    if container == "torch.save":
        torch.save({"epoch": 1, "state_dict": {"conv1.weight": _Payload(marker)}}, path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    with pytest.raises(ModelError) as exc:
        load_checkpoint(path)
    message = _one_line(exc, path)
    assert "refused" in message or "not a PyTorch checkpoint" in message
    assert not marker.exists()


def test_payload_really_executes_with_plain_pickle(tmp_path):
    """The malicious fixture is real: ordinary unpickling runs it."""
    marker = tmp_path / "executed"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.read_text() == "pwned"


def test_dla_checkpoint_is_named(tmp_path):
    path = tmp_path / "ctdet_coco_dla_2x.pth"
    torch.save({"state_dict": {"module.base.base_layer.0.weight": torch.zeros(16, 3, 7, 7)}}, path)
    with pytest.raises(ModelError, match="DLA-34"):
        load_checkpoint(path)


def test_legacy_serialization_format_loads(tmp_path, upstream_model):
    """The official 2019 checkpoints predate PyTorch's zip format (PyTorch 0.4 ``torch.save``)."""
    state = {"module." + k: v for k, v in upstream_model.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "ctdet_coco_resdcn18_legacy.pth"
    torch.save({"epoch": 140, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK")  # not a zip archive
    model, num_classes, depth = build_from_checkpoint(path)
    assert (num_classes, depth) == (80, 18)
    assert torch.equal(model.hm[2].weight, upstream_model.hm[2].weight)
    truncated = tmp_path / "legacy_truncated.pth"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="truncated or corrupt") as exc:
        load_checkpoint(truncated)
    _one_line(exc, truncated)


class _SystemPayload:
    """Unpickles as ``os.system(...)``: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_an_os_system_payload_is_refused_with_the_could_run_code_line(tmp_path):
    """Under this torch the refusal is worded "unsupported GLOBAL posix.system whose module is
    blocked"; it must still give the "refused ... could run code" line, not a generic one."""
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "state_dict": {"conv1.weight": _SystemPayload(marker)}}, path)
    with pytest.raises(ModelError) as exc:
        load_checkpoint(path)
    message = _one_line(exc, path)
    system = "posix.system" if sys.platform != "win32" else "nt.system"
    assert f"refused to load: the file pickles {system}, not just tensors, and loading it could run code" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "wording",
    [
        "Weights only load failed.\n\nUnsupported global: GLOBAL posix.system was not an allowed global by default.",
        "Weights only load failed.\n\nTrying to load unsupported GLOBAL posix.system whose module posix is blocked.",
    ],
    ids=["torch<2.6", "torch>=2.6"],
)
def test_both_wordings_of_the_refusal_name_the_global(wording):
    from trtdet_centernet.checkpoint import _UNSUPPORTED_GLOBAL

    assert _UNSUPPORTED_GLOBAL.search(wording).group(1) == "posix.system"
