"""CenterNet ``ctdet`` losses as upstream computes them (``src/lib/models/losses.py``).

``focal_loss``: CornerNet's penalty-reduced pixel-wise focal loss on the heatmap (alpha 2,
beta 4) over ``clamp(sigmoid(logits), 1e-4, 1 - 1e-4)``, normalised by the number of peaks.
``reg_l1_loss``: L1 between the predictions gathered at the object cells and the targets,
divided by the number of masked values. ``ctdet_loss`` weighs them 1 / 0.1 / 1 (hm/wh/off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HM_WEIGHT, WH_WEIGHT, OFF_WEIGHT = 1.0, 0.1, 1.0


def focal_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Upstream ``_neg_loss`` on raw heatmap logits [B, C, H, W] and Gaussian targets."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    neg_weights = torch.pow(1 - gt, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg).sum()
    num_pos = pos.sum()
    return -(pos_loss + neg_loss) / num_pos.clamp(min=1)


def gather_at(feature: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] values at flat cell indices ``ind`` [B, K] -> [B, K, C]."""
    batch, channels = feature.shape[:2]
    flat = feature.reshape(batch, channels, -1)
    return torch.gather(flat, 2, ind.unsqueeze(1).expand(-1, channels, -1)).transpose(1, 2)


def reg_l1_loss(
    output: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Upstream ``RegL1Loss``: masked L1 at the object cells, over the masked element count."""
    pred = gather_at(output.float(), ind)
    m = mask.unsqueeze(2).expand_as(pred).float()
    return F.l1_loss(pred * m, target * m, reduction="sum") / (m.sum() + 1e-4)


def ctdet_loss(
    heads: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its (detached) parts for raw heads ``{"hm", "wh", "reg"}`` and a target batch."""
    hm = focal_loss(heads["hm"], batch["hm"])
    wh = reg_l1_loss(heads["wh"], batch["mask"], batch["ind"], batch["wh"])
    off = reg_l1_loss(heads["reg"], batch["mask"], batch["ind"], batch["reg"])
    total = HM_WEIGHT * hm + WH_WEIGHT * wh + OFF_WEIGHT * off
    return total, {"hm": hm.detach(), "wh": wh.detach(), "off": off.detach()}
