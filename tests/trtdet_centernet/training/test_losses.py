"""CenterNet losses against hand-computed values of upstream's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from trtdet_centernet.training.losses import ctdet_loss, focal_loss, reg_l1_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_loss_by_hand():
    logits = torch.tensor([0.5, -1.0, 2.0]).view(1, 1, 1, 3)
    gt = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    p = [_sigmoid(v) for v in (0.5, -1.0, 2.0)]
    pos = math.log(p[0]) * (1 - p[0]) ** 2
    neg = math.log(1 - p[1]) * p[1] ** 2 * (1 - 0.5) ** 4 + math.log(1 - p[2]) * p[2] ** 2 * 1.0
    assert float(focal_loss(logits, gt)) == pytest.approx(-(pos + neg) / 1, rel=1e-5)


def test_focal_loss_without_peaks_is_the_negative_sum():
    logits = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    gt = torch.zeros(1, 1, 1, 2)
    expected = -sum(math.log(1 - _sigmoid(v)) * _sigmoid(v) ** 2 for v in (0.0, 1.0))
    assert float(focal_loss(logits, gt)) == pytest.approx(expected, rel=1e-5)


def test_reg_l1_by_hand():
    out = torch.zeros(1, 2, 2, 3)
    out[0, :, 1, 2] = torch.tensor([3.0, 5.0])  # cell index 1*3+2 = 5
    out[0, :, 0, 0] = torch.tensor([100.0, 100.0])  # a masked-out slot points here
    ind = torch.tensor([[5, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[[2.0, 7.0], [0.0, 0.0]]])
    # |3-2| + |5-7| = 3 over 2 masked values.
    assert float(reg_l1_loss(out, mask, ind, target)) == pytest.approx(1.5, rel=1e-4)


def test_ctdet_loss_weights():
    heads = {
        "hm": torch.zeros(1, 1, 2, 2),
        "wh": torch.ones(1, 2, 2, 2) * 4,
        "reg": torch.ones(1, 2, 2, 2) * 0.5,
    }
    batch = {
        "hm": torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]),
        "ind": torch.tensor([[0]]),
        "mask": torch.tensor([[1.0]]),
        "wh": torch.tensor([[[2.0, 2.0]]]),
        "reg": torch.tensor([[[0.0, 0.0]]]),
    }
    total, parts = ctdet_loss(heads, batch)
    assert float(total) == pytest.approx(float(parts["hm"]) + 0.1 * 2.0 + 0.5, rel=1e-4)
