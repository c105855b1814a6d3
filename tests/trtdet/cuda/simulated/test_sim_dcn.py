"""DCNv2 im2col kernel (+ GEMM) under the simulator vs the pure-torch reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet_centernet.dcn import modulated_deform_conv
from trtdet_centernet.dcn_cuda import (
    DcnShape,
    dcn_forward_raw,
    dcn_workspace_bytes,
    modulated_deform_conv_cuda,
)

from ..checks import dcn_inputs

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

# (batch, C, H, W, Cout, kernel, stride, padding, dilation, deformable groups)
CASES = [
    (2, 4, 6, 5, 3, (3, 3), (1, 1), (1, 1), (1, 1), 2),
    (1, 2, 7, 7, 2, (3, 3), (2, 2), (2, 2), (2, 2), 1),
    (1, 3, 5, 6, 2, (2, 3), (1, 2), (0, 1), (1, 1), 3),
]


@pytest.mark.parametrize("case", CASES, ids=["dg2", "stride2-dil2", "rect-dg3"])
def test_matches_reference_fp32_fp16_and_raw_pointers(case):
    b, c, h, w, oc, kernel, stride, padding, dilation, groups = case
    x, offset, mask, weight, bias = dcn_inputs(np.random.default_rng(1), b, c, h, w, oc, kernel, stride, padding,
                                               dilation, groups)
    args = (stride, padding, dilation, groups)
    want = modulated_deform_conv(x.double(), offset.double(), mask.double(), weight.double(), bias.double(), *args)
    got = modulated_deform_conv_cuda(x, offset, mask, weight, bias, *args)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)

    out = torch.empty_like(got)
    shape = DcnShape(b, c, h, w, oc, *kernel, *stride, *padding, *dilation, groups)
    dcn_forward_raw(x.data_ptr(), offset.data_ptr(), mask.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                    out.data_ptr(), shape, np.float32, 0)
    torch.testing.assert_close(out, got, rtol=0, atol=0)

    half = modulated_deform_conv_cuda(x.half(), offset.half(), mask.half(), weight.half(), bias.half(), *args)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double(), want, rtol=2e-2, atol=2e-2)


def test_no_bias_and_chunked_workspace():
    x, offset, mask, weight, _ = dcn_inputs(np.random.default_rng(2), 3, 2, 5, 5, 2, (3, 3), (1, 1), (1, 1),
                                            (1, 1), 1)
    want = modulated_deform_conv(x, offset, mask, weight, None)
    torch.testing.assert_close(modulated_deform_conv_cuda(x, offset, mask, weight, None), want, rtol=1e-5, atol=1e-5)
    shape = DcnShape(3, 2, 5, 5, 2, 3, 3)
    per_image = dcn_workspace_bytes(shape, 4, limit=1)  # room for one image: three chunks
    assert per_image == (2 * 9 + 2) * 25 * 4
    workspace = torch.empty(per_image // 4)
    out = torch.empty_like(want)
    dcn_forward_raw(x.data_ptr(), offset.data_ptr(), mask.data_ptr(), weight.data_ptr(), None, out.data_ptr(),
                    shape, torch.float32, 0, workspace.data_ptr(), per_image)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
