"""How legacy CenterNet ONNX files were exported: DCNv2 as a tutorial ``Plugin`` op or the fork's
``DCNv2`` op. Shared by the legacy-conversion tests (ONNX Runtime) and the TensorRT rewrite tests.

Patch a DCN module's ``forward`` with ``tutorial_dcn_forward`` / ``fork_dcn_forward`` (via
``types.MethodType``) before ``torch.onnx.export``; the traced values only need the right shapes.
"""

from __future__ import annotations

import json

import torch


class TutorialPlugin(torch.autograd.Function):
    """The C++ tutorial's export hook: op ``Plugin``, name=DCNv2, info=json, raw offset_mask input."""

    @staticmethod
    def forward(ctx, x, offset_mask, weight, bias, info):
        # Like the tutorial, the traced value only needs the right shape.
        return x.new_zeros(x.shape[0], weight.shape[0], *offset_mask.shape[2:])

    @staticmethod
    def symbolic(g, x, offset_mask, weight, bias, info):
        return g.op("Plugin", x, offset_mask, weight, bias, name_s="DCNv2", info_s=info)


class ForkDCNv2(torch.autograd.Function):
    """onnx-tensorrt fork form (CaoWGG): op ``DCNv2`` with offset and mask computed in the graph."""

    @staticmethod
    def forward(ctx, x, offset, mask, weight, bias):
        return x.new_zeros(x.shape[0], weight.shape[0], *offset.shape[2:])

    @staticmethod
    def symbolic(g, x, offset, mask, weight, bias):
        return g.op(
            "DCNv2",
            x,
            offset,
            mask,
            weight,
            bias,
            stride_i=1,
            padding_i=1,
            dilation_i=1,
            deformable_group_i=1,
        )


def tutorial_dcn_forward(self, x):
    info = json.dumps({"dilation": [1, 1], "padding": [1, 1], "stride": [1, 1], "deformable_groups": 1})
    return TutorialPlugin.apply(x, self.conv_offset_mask(x), self.weight, self.bias, info)


def fork_dcn_forward(self, x):
    o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
    return ForkDCNv2.apply(x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask), self.weight, self.bias)
