"""Shared fixtures: an official-format ResDCN-18 checkpoint built from the upstream reference."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from . import upstream_reference as upstream  # noqa: E402

#: Small inputs keep the 2-core CI fast; 128 is a multiple of the trunk's stride 32.
SIZE = 128


@pytest.fixture(scope="session")
def upstream_model():
    """Upstream ResDCN-18 (80 COCO classes) with random weights, offsets and BN statistics."""
    heads = {"hm": 80, "wh": 2, "reg": 2}
    return upstream.randomize_(upstream.get_pose_net(18, heads, head_conv=64), seed=1)


@pytest.fixture(scope="session")
def official_checkpoint(upstream_model, tmp_path_factory) -> Path:
    """Saved like upstream's ``save_model`` from a DataParallel model, without BN counters (PyTorch 0.4)."""
    state = {
        "module." + k: v.clone()
        for k, v in upstream_model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path_factory.mktemp("ckpt") / "ctdet_coco_resdcn18.pth"
    torch.save({"epoch": 70, "state_dict": state}, path)
    return path


@pytest.fixture(scope="session")
def centernet_plugin():
    """The plugin module, registered with trtdet's plugin manager (entry point or by hand)."""
    import trtdet_centernet.plugin as plugin
    from trtdet import plugins

    plugins.load_plugins()
    if not plugins.pm.is_registered(plugin):
        plugins.register_plugin(plugin, name="centernet")
    return plugin


@pytest.fixture(scope="session")
def exported_onnx(centernet_plugin, official_checkpoint, tmp_path_factory) -> Path:
    """The checkpoint exported by ``trtdet export`` at 128x128 with a dynamic batch."""
    from click.testing import CliRunner

    from trtdet.cli.main import cli

    out = tmp_path_factory.mktemp("onnx") / "centernet.onnx"
    args = ["export", "--model", "centernet", "--weights", str(official_checkpoint), "--output", str(out)]
    result = CliRunner().invoke(cli, [*args, "--input-size", str(SIZE), str(SIZE), "--dynamic-batch"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def image_batch():
    """Two normalised-looking BGR inputs."""
    gen = torch.Generator().manual_seed(7)
    return torch.randn(2, 3, SIZE, SIZE, generator=gen)
