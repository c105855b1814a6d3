"""The ResNet-DCN network: upstream parameter names and shapes, and the fused output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtdet_centernet.dcn import DCNv2
from trtdet_centernet.network import build_centernet, fill_up_weights, fold_batchnorm, prepare_for_inference

from . import upstream_reference as upstream
from .conftest import SIZE


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_state_dict_matches_upstream_keys_and_shapes(depth):
    ours = build_centernet(depth=depth, num_classes=80, head_conv=64)
    theirs = upstream.get_pose_net(depth, {"hm": 80, "wh": 2, "reg": 2}, head_conv=64)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours_shapes == theirs_shapes


def test_upstream_layout_facts():
    model = build_centernet(18, num_classes=3)
    names = dict(model.state_dict())
    for i in (0, 6, 12):
        assert names[f"deconv_layers.{i}.conv_offset_mask.weight"].shape[0] == 27
    for i in (1, 4, 7, 10, 13, 16):
        assert f"deconv_layers.{i}.running_var" in names
    for i, ch in zip((3, 9, 15), (256, 128, 64), strict=True):
        assert names[f"deconv_layers.{i}.weight"].shape == (ch, ch, 4, 4)
    assert torch.allclose(model.hm[2].bias, torch.full((3,), -2.19))
    assert model.num_channels == 10


def test_fill_up_weights_is_bilinear_upsampling():
    """A constant map stays constant inside when upsampled by the initialised deconv."""
    up = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)
    fill_up_weights(up)
    expected = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(up.weight[0, 0], expected[:, None] * expected[None, :])


def test_forward_is_fused_upstream_output_and_heads_are_raw(upstream_model, image_batch):
    model = build_centernet(18, 80)
    model.load_state_dict(upstream_model.state_dict())
    model.eval()
    with torch.no_grad():
        ours = model(image_batch)
        heads = model.heads(image_batch)
        ret = upstream_model(image_batch)[-1]
        theirs = upstream.deployment_output(ret)
    cells = (SIZE // 4) ** 2
    assert ours.shape == (2, cells, 164)
    rel = (ours - theirs).abs().max() / theirs.abs().max()
    assert rel < 1e-4
    for name in ("hm", "wh", "reg"):
        np.testing.assert_allclose(
            heads[name].numpy(), ret[name].numpy(), rtol=1e-3, atol=1e-4 * float(ret[name].abs().max())
        )


def test_folded_batchnorm_matches_upstream(upstream_model, image_batch):
    model = build_centernet(18, 80)
    model.load_state_dict(upstream_model.state_dict())
    folded = fold_batchnorm(model.eval())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        theirs = upstream.deployment_output(upstream_model(image_batch)[-1])
        ours = folded(image_batch)
    assert (ours - theirs).abs().max() / theirs.abs().max() < 1e-4


def test_folded_batchnorm_bottleneck_and_channels_last():
    """ResNet-50 blocks (three convs, downsample) fold too; NHWC memory gives the same output."""
    model = upstream.randomize_(build_centernet(50, 3), seed=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x)
        got_nhwc = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert (got - expected).abs().max() / expected.abs().max() < 1e-4
    assert got_nhwc.is_contiguous() and (got_nhwc - got).abs().max() / got.abs().max() < 1e-5


def test_the_inference_network_matches_upstream(upstream_model, image_batch):
    """BatchNorm folded, heads merged into two convolutions, offset convs padded: upstream's output."""
    model = build_centernet(18, 80)
    model.load_state_dict(upstream_model.state_dict())
    prepared = prepare_for_inference(model.eval())
    assert prepared.merged_heads is not None and prepared.hm is None
    assert prepared.merged_heads.project.out_channels == 88  # 2 + 2 + 80, padded to a multiple of 8
    assert all(m.conv_offset_mask.out_channels == 32 for m in prepared.modules() if isinstance(m, DCNv2))
    with torch.no_grad():
        theirs = upstream.deployment_output(upstream_model(image_batch)[-1])
        ours = prepared(image_batch)
        nhwc = prepared.to(memory_format=torch.channels_last)(image_batch.contiguous(memory_format=torch.channels_last))
    assert (ours - theirs).abs().max() / theirs.abs().max() < 1e-4
    assert (nhwc - theirs).abs().max() / theirs.abs().max() < 1e-4
    with pytest.raises(ValueError, match="merged for inference"):
        prepared.heads(image_batch)


def test_fold_batchnorm_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_centernet(18, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth 152"):
        build_centernet(152)
    with pytest.raises(ValueError, match="num_classes"):
        build_centernet(18, num_classes=0)
