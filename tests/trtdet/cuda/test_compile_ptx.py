"""Every kernel compiles to PTX for compute capability 9.0 (H100), without a GPU.

The simulator runs kernels as Python, so it accepts code that the CUDA target rejects; this
compiles each kernel, for each argument signature its launcher uses, with the real
numba.cuda compiler (NVVM). It needs libNVVM (a CUDA toolkit); without one it skips.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trtdet.cuda import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="compile_ptx needs the real numba.cuda, not the simulator")


def _nvvm_reason() -> str | None:
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as exc:
        return f"libNVVM unavailable: {exc}"
    return None


@pytest.fixture
def without_gpu(monkeypatch):
    """numba 0.68's built-in CUDA target asks the current device for its compute capability when it
    compiles a device function, even under ``compile_ptx(cc=...)``; answer for it on GPU-less CI."""
    reason = _nvvm_reason()
    if reason:
        pytest.skip(reason)
    import numba.cuda.dispatcher as dispatcher

    if hasattr(dispatcher, "get_current_device"):
        from numba import cuda

        try:
            cuda.get_current_device()
        except Exception:
            monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=(9, 0)))


def _cases():
    from trtdet.preprocess import cuda as preprocess
    from trtdet.preprocess import cuda_resize as resize
    from trtdet_centernet import cuda_decode as centernet
    from trtdet_centernet import dcn_cuda as dcn
    from trtdet_yolo import cuda_decode as yolo

    cases = [(f"preprocess-{i}", preprocess.KERNEL_PY, sig) for i, sig in enumerate(preprocess.kernel_signatures())]
    cases += [(f"letterbox-{i}", resize.KERNEL_PY, sig) for i, sig in enumerate(preprocess.kernel_signatures())]
    for module, prefix in ((centernet, "centernet"), (yolo, "yolo")):
        for name, sigs in module.kernel_signatures().items():
            cases += [(f"{prefix}-{name}-{i}", module.KERNELS_PY[name], sig) for i, sig in enumerate(sigs)]
    cases += [(f"dcn-{i}", dcn.KERNEL_PY, sig) for i, sig in enumerate(dcn.kernel_signatures())]
    return cases


CASES = _cases()


@pytest.mark.parametrize(("pyfunc", "signature"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kernel_compiles_for_sm90(without_gpu, pyfunc, signature):
    from numba import cuda

    ptx, _ = cuda.compile_ptx(pyfunc, signature, cc=(9, 0))
    assert ".target sm_90" in ptx
    assert ".entry" in ptx


def test_preprocess_rounding_is_pinned(without_gpu):
    """The warp kernel's float ops must not be contracted: explicit .rn mul/add and fma only."""
    from numba import cuda

    from trtdet.preprocess import cuda as preprocess

    ptx, _ = cuda.compile_ptx(preprocess.KERNEL_PY, preprocess.kernel_signatures()[0], cc=(9, 0))
    assert "mul.rn.f32" in ptx and "add.rn.f32" in ptx and "fma.rn.f32" in ptx
    assert "cvt.rni.f32.f32" in ptx  # rintf: round half to even, like cv2's cvRound


def test_letterbox_rounding_is_pinned(without_gpu):
    """The resize kernel's coordinates round like cv2's: separate double mul/add, then float32 ops."""
    from numba import cuda

    from trtdet.preprocess import cuda as preprocess
    from trtdet.preprocess import cuda_resize as resize

    ptx, _ = cuda.compile_ptx(resize.KERNEL_PY, preprocess.kernel_signatures()[0], cc=(9, 0))
    assert "mul.rn.f64" in ptx and "add.rn.f64" in ptx and "fma.rn.f64" not in ptx
    assert "cvt.rni.f32.f32" in ptx  # cvRound of the weights: half to even
