"""CenterNet ResNet-DCN (ctdet) with the parameter names of the official checkpoints.

Follows xingyizhou/CenterNet ``src/lib/models/networks/resnet_dcn.py``: a torchvision-style
ResNet trunk (``conv1``, ``bn1``, ``layer1..4``), three upsampling stages
``DCN 3x3 -> BN -> ReLU -> ConvTranspose 4x4/2 -> BN -> ReLU`` with 256, 128, 64 channels
(``deconv_layers.{0..17}``) and heads ``hm``, ``wh``, ``reg`` (conv3x3 + ReLU + conv1x1).

``forward`` returns the fused deployment output ``[B, H/4*W/4, 4 + 2*C]``: channel-last
concat of ``[reg, wh, hm, pool_hm]`` with raw ``hm`` logits and ``pool_hm`` their 3x3/1
max-pool, which is what the exported ONNX produces and the decoder reads.
``heads(x)`` returns upstream's raw ``{"hm", "wh", "reg"}`` dict for training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from trtdet_centernet.dcn import DCNv2

BN_MOMENTUM = 0.1
DECONV_CHANNELS = (256, 128, 64)
#: Upstream's ``hm`` bias init: sigmoid(-2.19) ~ 0.1, the focal-loss prior.
HM_BIAS_INIT = -2.19


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: ResNet depth -> (block, blocks per stage), as upstream's ``resnet_spec``.
RESNET_SPEC: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Upstream's bilinear-upsampling init of the transposed convs (every channel alike)."""
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for ch in range(1, w.size(0)):
        w[ch, 0, :, :] = w[0, 0, :, :]


def _head(in_ch: int, head_conv: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, head_conv, 3, padding=1, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(head_conv, out_ch, 1, bias=True),
    )


class CenterNetResDCN(nn.Module):
    """ResNet-DCN CenterNet for ``ctdet``; see the module docstring for its output."""

    def __init__(self, depth: int = 18, num_classes: int = 80, head_conv: int = 64) -> None:
        super().__init__()
        if depth not in RESNET_SPEC:
            raise ValueError(f"unsupported ResNet depth {depth} (choose from {sorted(RESNET_SPEC)})")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if head_conv < 1:
            raise ValueError(f"head_conv must be >= 1 (upstream ctdet ResDCN uses 64), got {head_conv}")
        block, layers = RESNET_SPEC[depth]
        self.depth = depth
        self.num_classes = num_classes
        self.head_conv = head_conv
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.deconv_layers = self._make_deconv_layers(DECONV_CHANNELS)
        self.hm = _head(64, head_conv, num_classes)
        self.wh = _head(64, head_conv, 2)
        self.reg = _head(64, head_conv, 2)
        self.hm[-1].bias.data.fill_(HM_BIAS_INIT)
        #: The three heads as one module after ``merge_heads`` (inference only), else None.
        self.merged_heads: MergedHeads | None = None
        for head in (self.wh, self.reg):
            for m in head.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, std=0.001)
                    nn.init.zeros_(m.bias)

    @property
    def num_channels(self) -> int:
        return 4 + 2 * self.num_classes

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        expansion = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if stride != 1 or self.inplanes != planes * expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * expansion, momentum=BN_MOMENTUM),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _make_deconv_layers(self, channels: tuple[int, ...]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for planes in channels:
            up = nn.ConvTranspose2d(planes, planes, 4, stride=2, padding=1, output_padding=0, bias=False)
            fill_up_weights(up)
            layers += [
                DCNv2(
                    self.inplanes, planes, kernel_size=3, stride=1, padding=1, dilation=1, deformable_groups=1
                ),
                nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
                up,
                nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = planes
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-channel stride-4 feature map the heads read."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.deconv_layers(x)

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Upstream's raw head outputs ``{"hm": logits, "wh", "reg"}`` (NCHW), for training."""
        if self.merged_heads is not None:
            raise ValueError("this network's heads were merged for inference (merge_heads); it has no separate heads")
        feat = self.features(x)
        return {"hm": self.hm(feat), "wh": self.wh(feat), "reg": self.reg(feat)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged_heads is not None:
            return merged_output(self.merged_heads(self.features(x)), self.num_classes)
        return fuse_heads(self.heads(x))


def fuse_heads(heads: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, H*W, 4 + 2C]`` = channel-last ``[reg, wh, hm, maxpool3x3(hm)]``, contiguous.

    Permuting to NHWC before flattening makes this a free view when the heads are already
    in ``channels_last`` memory (the GPU backend's layout) and a single copy otherwise.
    """
    hm = heads["hm"]
    pool = F.max_pool2d(hm, 3, stride=1, padding=1)
    fused = torch.cat([heads["reg"], heads["wh"], hm, pool], dim=1)
    batch, channels = fused.shape[:2]
    return fused.permute(0, 2, 3, 1).reshape(batch, -1, channels)


def merged_output(out: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``fuse_heads``' output from the merged heads' ``[B, >= 4 + C, H, W]`` ``[reg, wh, hm]`` channels."""
    head = out[:, : 4 + num_classes]
    pool = F.max_pool2d(head[:, 4:], 3, stride=1, padding=1)
    fused = torch.cat([head, pool], dim=1)
    batch, channels = fused.shape[:2]
    return fused.permute(0, 2, 3, 1).reshape(batch, -1, channels)


class MergedHeads(nn.Module):
    """The ``reg``, ``wh`` and ``hm`` heads as two convolutions instead of six (inference only).

    The three 3x3 convolutions read the same features, so they stack into one with
    ``3 * head_conv`` outputs; the three 1x1 convolutions become one whose weight is
    block-diagonal, giving ``[reg, wh, hm]`` -- the order of the deployment output -- with the
    output channels padded with zeros to a multiple of 8 (tensor-core friendly). Same values
    as the separate heads; one wide convolution each instead of narrow ones (a 64 -> 2 1x1
    convolution ran a 16x16-tile GEMM on the H200).
    """

    def __init__(self, reg: nn.Sequential, wh: nn.Sequential, hm: nn.Sequential, multiple: int = 8) -> None:
        super().__init__()
        heads = (reg, wh, hm)
        first = [head[0] for head in heads]
        last = [head[2] for head in heads]
        hidden = [conv.out_channels for conv in first]
        outputs = [conv.out_channels for conv in last]
        padded = -(-sum(outputs) // multiple) * multiple
        self.spread = nn.Conv2d(first[0].in_channels, sum(hidden), 3, padding=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.project = nn.Conv2d(sum(hidden), padded, 1, bias=True)
        with torch.no_grad():
            self.spread.weight.copy_(torch.cat([conv.weight for conv in first]))
            self.spread.bias.copy_(torch.cat([conv.bias for conv in first]))
            self.project.weight.zero_()
            self.project.bias.zero_()
            row = column = 0
            for conv, width, count in zip(last, hidden, outputs, strict=True):
                self.project.weight[row : row + count, column : column + width] = conv.weight
                self.project.bias[row : row + count] = conv.bias
                row, column = row + count, column + width

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(self.relu(self.spread(features)))


def merge_heads(model: CenterNetResDCN) -> CenterNetResDCN:
    """Replace the three heads with one ``MergedHeads``, in place; returns ``model`` (inference only)."""
    if model.merged_heads is None:
        model.merged_heads = MergedHeads(model.reg, model.wh, model.hm)
        del model.hm, model.wh, model.reg
        model.hm = model.wh = model.reg = None  # type: ignore[assignment]
    return model


def pad_offset_convs(model: nn.Module, multiple: int = 8) -> nn.Module:
    """Pad each DCN's offset/mask convolution with zero output channels to a multiple of 8, in place.

    3 x 9 = 27 outputs made cuDNN pad every call (``nhwcAddPaddingKernel`` on the H200); the
    padding channels are never read (``DCNv2.offset_and_mask`` slices the first 27).
    """
    for module in model.modules():
        if isinstance(module, DCNv2):
            conv = module.conv_offset_mask
            padded = -(-conv.out_channels // multiple) * multiple
            if padded == conv.out_channels:
                continue
            wider = nn.Conv2d(conv.in_channels, padded, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                              bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
            with torch.no_grad():
                wider.weight.zero_()
                wider.weight[: conv.out_channels] = conv.weight
                if conv.bias is not None:
                    wider.bias.zero_()
                    wider.bias[: conv.out_channels] = conv.bias
            module.conv_offset_mask = wider
    return model


def prepare_for_inference(model: CenterNetResDCN) -> CenterNetResDCN:
    """The deployment network, in place: BatchNorm folded, heads merged, offset convs padded."""
    return pad_offset_convs(merge_heads(fold_batchnorm(model)))  # type: ignore[return-value]


def fold_batchnorm(model: CenterNetResDCN) -> CenterNetResDCN:
    """Fold every eval-mode BatchNorm into the convolution before it, in place; returns ``model``.

    Inference only (the BN layers become ``Identity``, so training and upstream checkpoint
    loading need the unfolded network). Saves one full read and write of each feature map.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")

    def fold(owner: nn.Module, conv_name: str, bn_name: str) -> None:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        if isinstance(conv, DCNv2):
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            conv.weight, conv.bias = weight, bias
        else:
            setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d)))
        setattr(owner, bn_name, nn.Identity())

    with torch.no_grad():
        fold(model, "conv1", "bn1")
        for module in model.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                for index in (1, 2, 3):
                    if hasattr(module, f"bn{index}"):
                        fold(module, f"conv{index}", f"bn{index}")
                if module.downsample is not None:
                    fold(module.downsample, "0", "1")
        layers = model.deconv_layers
        for index, layer in enumerate(list(layers)):
            if isinstance(layer, nn.BatchNorm2d):
                fold(layers, str(index - 1), str(index))
    return model


def build_centernet(depth: int = 18, num_classes: int = 80, head_conv: int = 64) -> CenterNetResDCN:
    """A randomly initialised ResNet-DCN CenterNet (upstream init, no ImageNet weights)."""
    return CenterNetResDCN(depth=depth, num_classes=num_classes, head_conv=head_conv)
