"""The DCNv2 call, stated once: its signature, its output size and the offset/mask shapes it takes.

Every implementation (the CPU reference ``dcn.modulated_deform_conv``, ``dcn_gather``,
``dcn_triton``, the numba kernel of ``dcn_cuda``) is a ``DeformConv`` and checks its
arguments with ``output_size`` and ``check_offset_mask`` from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

IntPair = int | tuple[int, int]


class DeformConv(Protocol):
    """Modulated deformable convolution (DCNv2).

    ``x`` [B, C, H, W], ``offset`` [B, 2*G*K, Ho, Wo], ``mask`` [B, G*K, Ho, Wo] (already
    sigmoid-ed), ``weight`` [Cout, C, kh, kw], ``bias`` [Cout] or None -> [B, Cout, Ho, Wo], with
    ``K = kh*kw`` taps and ``G = deformable_groups``. Offset channel ``g*2K + 2k`` is the row (y)
    offset of tap ``k = i*kw + j`` in group ``g``, ``g*2K + 2k + 1`` its column (x) offset; mask
    channel ``g*K + k``. Out-of-image bilinear corners read zero.
    """

    def __call__(
        self,
        x: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        deformable_groups: int = 1,
    ) -> torch.Tensor: ...


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The convolution's output length along one axis."""
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


def check_offset_mask(
    offset: tuple[int, ...], mask: tuple[int, ...], batch: int, groups: int, taps: int, out: tuple[int, int],
    prefix: str = "",
) -> None:  # fmt: skip
    """``ValueError`` (one line, after ``prefix``) unless ``offset`` and ``mask`` have the shapes of a
    call on ``batch`` images with ``groups`` deformable groups of ``taps`` taps and output ``out`` (Ho, Wo)."""
    expected_offset = (batch, 2 * groups * taps, *out)
    expected_mask = (batch, groups * taps, *out)
    if tuple(offset) != expected_offset or tuple(mask) != expected_mask:
        raise ValueError(
            f"{prefix}offset/mask: expected {expected_offset} and {expected_mask}, got {tuple(offset)} and {tuple(mask)}"
        )
