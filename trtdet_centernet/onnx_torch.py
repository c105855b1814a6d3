"""ONNX ``DeformConv`` as a torch module, for trtdet's ONNX->torch converter (``trtdet.onnx_torch``,
through the ``trtdet_onnx_torch_ops`` hook)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DeformConvModule(nn.Module):
    """ONNX ``DeformConv`` (opset 19) as a torch module: inputs X, W, offset[, B[, mask]]."""

    def __init__(self, stride: list[int], padding: list[int], dilation: list[int], offset_group: int) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.offset_group = stride, padding, dilation, offset_group

    def forward(self, x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor,
                bias: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        from trtdet_centernet.dcn import deform_conv

        if mask is None:
            kernel_taps = weight.shape[2] * weight.shape[3]
            mask = offset.new_ones(offset.shape[0], self.offset_group * kernel_taps, *offset.shape[2:])
        return deform_conv(x, offset, mask, weight, bias, tuple(self.stride), tuple(self.padding),
                           tuple(self.dilation), self.offset_group)


def _geometry(attributes: dict[str, Any], name: str) -> DeformConvModule:
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise NotImplementedError(f"DeformConv {name}: asymmetric pads {pads} are not supported")
    if attributes.get("group", 1) != 1:
        raise NotImplementedError(f"DeformConv {name}: group != 1 is not supported")
    return DeformConvModule(
        stride=list(attributes.get("strides", [1, 1])),
        padding=pads[:2],
        dilation=list(attributes.get("dilations", [1, 1])),
        offset_group=int(attributes.get("offset_group", 1)),
    )


def convert_deform_conv(node: Any) -> DeformConvModule:
    """``trtdet.onnx_torch`` converter: the module is called with (X, W, offset, B, mask)."""
    from trtdet.onnx_torch import Unsupported

    try:
        return _geometry(node.attrs, node.name)
    except NotImplementedError as exc:
        raise Unsupported(str(exc)) from exc
