"""The numba.cuda kernels on a real GPU, at real shapes, against their CPU references.

Marked ``gpu``: they skip with the reason on machines without a usable CUDA GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from trtdet.cuda.runtime import SIMULATOR, cuda_available

from .checks import (
    CENTERNET_MEAN,
    CENTERNET_STD,
    assert_matches_cv2_warp,
    assert_same_detections,
    centernet_output,
    compare_preprocess,
    dcn_inputs,
    letterbox_levels_vs_cv2,
    load_photos,
    yolo_model_path,
    yolo_output,
)

_REASON = "the CUDA simulator is on" if SIMULATOR else cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

PREPROCESS = {
    "centernet-512": ((512, 512), dict(mean=CENTERNET_MEAN, std=CENTERNET_STD, channel_order="BGR", border_value=0)),
    "yolo-640": ((640, 640), dict(mean=(0, 0, 0), std=(1, 1, 1), channel_order="RGB", border_value=114)),
    "odd-333x517": ((333, 517), dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), channel_order="RGB", border_value=7)),
}


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


@pytest.fixture(scope="module")
def photos():
    import cv2

    images = load_photos()
    images.append(cv2.resize(images[0], (1920, 1080), interpolation=cv2.INTER_LINEAR))  # a full-HD frame
    return images


@pytest.mark.parametrize("case", sorted(PREPROCESS))
def test_preprocess_matches_cv2_on_real_photos(case, photos, torch):
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

    size, options = PREPROCESS[case]
    want = WarpAffinePreprocessor(size, **options)(photos).tensor
    gpu = CudaWarpAffinePreprocessor(size, **options)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = gpu(photos)
    stream.synchronize()
    assert got.tensor.is_cuda and got.tensor.dtype == torch.float32
    stats = compare_preprocess(got.tensor.cpu().numpy(), want, options["mean"], options["std"])
    print(case, stats)
    assert_matches_cv2_warp(stats)  # bit for bit with OpenCV 4.11-5.0 (see checks.WARP_MAX_LEVELS)

    # Images already on the GPU, and half precision, give the same values.
    on_gpu = [torch.from_numpy(p).cuda() for p in photos]
    again = gpu(on_gpu)
    torch.testing.assert_close(again.tensor, got.tensor, rtol=0, atol=0)
    half = CudaWarpAffinePreprocessor(size, dtype=torch.float16, **options)(photos).tensor
    np.testing.assert_array_equal(half.cpu().numpy(), got.tensor.cpu().numpy().astype(np.float16))  # fp32 rounded


@pytest.mark.parametrize("batch", ["small", "large"])
def test_pinned_frames_go_up_without_staging_and_give_cv2s_values(photos, torch, batch):
    """Pinned, pageable and pinned again in one batch (the uploads interleave); a 40-frame batch
    takes the parallel-copy path for its pageable frames. Reference: cv2.warpAffine (CPU preprocessor)."""
    from trtdet.io.pinned import is_pinned, pinned_frames
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

    size, options = PREPROCESS["centernet-512"]
    images = photos if batch == "small" else [photos[k % len(photos)] for k in range(40)]
    mixed = []
    for k, image in enumerate(images):
        if k % 2 == 0:
            (frame,) = pinned_frames(1, *image.shape[:2])
            frame[...] = image
            assert is_pinned(frame)
            mixed.append(frame)
        else:
            assert not is_pinned(image)
            mixed.append(image)
    want = WarpAffinePreprocessor(size, **options)(images).tensor
    gpu = CudaWarpAffinePreprocessor(size, **options)
    staged = gpu(images).tensor.cpu().numpy()  # every frame through pageable staging
    assert_matches_cv2_warp(compare_preprocess(staged, want, options["mean"], options["std"]))
    for _ in range(3):  # the staging slots alternate
        got = gpu(mixed).tensor
        torch.cuda.synchronize()
        np.testing.assert_array_equal(got.cpu().numpy(), staged)  # pinned frames give the same values


@pytest.mark.parametrize("case", sorted(PREPROCESS))
def test_letterbox_kernel_is_cv2_resize_and_pad_on_real_photos(case, photos, torch):
    """The resize-and-pad letterbox (Ultralytics') at real sizes vs cv2.resize + copyMakeBorder."""
    from trtdet.preprocess.cpu import WarpAffinePreprocessor
    from trtdet.preprocess.cuda import CudaWarpAffinePreprocessor

    size, options = PREPROCESS[case]
    rng = np.random.default_rng(11)
    odd = [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for shape in
           [(1, 1), (1, 777), (777, 1), (3, 5), (1081, 1919), (641, 639), (17, 1000), (1000, 17)]]
    images = photos + odd
    gpu = CudaWarpAffinePreprocessor(size, letterbox="ultralytics", **options)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = gpu(images)
    stream.synchronize()
    levels = got.tensor.cpu().numpy()
    worst, mean = letterbox_levels_vs_cv2(
        levels, images, size, options["mean"], options["std"], options["channel_order"], options["border_value"]
    )
    print(case, "max", worst, "mean", mean)
    assert worst <= 1 and mean <= 0.05, (worst, mean)  # the tolerance
    want = WarpAffinePreprocessor(size, letterbox="ultralytics", **options)(images).tensor
    np.testing.assert_array_equal(levels, want)  # what the kernel achieves: cv2.resize's fixed point, bit for bit
    on_gpu = [torch.from_numpy(p).cuda() for p in images]
    torch.testing.assert_close(gpu(on_gpu).tensor, got.tensor, rtol=0, atol=0)
    half = CudaWarpAffinePreprocessor(size, letterbox="ultralytics", dtype=torch.float16, **options)(images).tensor
    np.testing.assert_array_equal(half.cpu().numpy(), want.astype(np.float16))


@pytest.mark.parametrize(
    ("name", "blobs", "threshold", "dtype"),
    [("realistic", 30, 0.3, "float32"), ("realistic-eval", 30, 0.01, "float32"), ("noisy", 0, 0.3, "float32"),
     ("noisy-fp16", 0, 0.2, "float16")],
)
def test_centernet_decode_identical_at_512(name, blobs, threshold, dtype, torch):
    from trtdet.preprocess.affine import letterbox_transform
    from trtdet_centernet.cuda_decode import CudaCenterNetDecoder
    from trtdet_centernet.decode import decode_centernet

    output = centernet_output(np.random.default_rng(11), 4, 128, 128, 80, blobs=blobs).astype(dtype)
    sources = [(1080, 1920), (512, 512), (427, 640), (700, 300)]
    transforms = [letterbox_transform(s, (512, 512)) for s in sources]
    want = decode_centernet(output, transforms, stride=4, input_size=(512, 512), num_classes=80, k=100,
                            threshold=threshold)
    decoder = CudaCenterNetDecoder(80, (512, 512), k=100, threshold=threshold)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = decoder({"output": torch.from_numpy(output).cuda()}, transforms)
    assert_same_detections(got, want)
    assert sum(len(d) for d in want) > 0
    # Twice: the kernels reset their scratch state.
    assert_same_detections(decoder({"output": torch.from_numpy(output).cuda()}, transforms), want)


@pytest.fixture(scope="module")
def yolo11n_outputs(photos):
    ort = pytest.importorskip("onnxruntime")
    from trtdet.preprocess.cpu import WarpAffinePreprocessor

    path = yolo_model_path()
    if not path.is_file():
        pytest.skip(f"{path}: missing")
    batch = WarpAffinePreprocessor((640, 640), channel_order="RGB", border_value=114)(photos)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (raw,) = session.run(None, {"images": batch.tensor})
    return raw, batch.transforms


@pytest.mark.parametrize(
    ("conf", "iou", "max_det", "agnostic"),
    [(0.25, 0.7, 300, False), (0.001, 0.7, 300, False), (0.001, 0.5, 10, False), (0.001, 0.5, 300, True)],
)
def test_yolo_decode_identical_on_yolo11n_outputs(yolo11n_outputs, conf, iou, max_det, agnostic, torch):
    from trtdet_yolo.cuda_decode import CudaYoloDecoder
    from trtdet_yolo.decode import decode_yolo

    raw, transforms = yolo11n_outputs
    want = decode_yolo(raw, transforms, head="v8", num_classes=80, conf_threshold=conf, iou_threshold=iou,
                       max_detections=max_det, agnostic=agnostic)
    got = CudaYoloDecoder(80, conf, iou, max_det, agnostic)({"output0": torch.from_numpy(raw).cuda()}, transforms)
    assert_same_detections(got, want)
    assert sum(len(d) for d in want) > 0


@pytest.mark.parametrize("head", ["v8", "v5"])
def test_yolo_decode_identical_on_synthetic_heads(head, torch):
    from trtdet.preprocess.affine import letterbox_transform
    from trtdet_yolo.cuda_decode import CudaYoloDecoder
    from trtdet_yolo.decode import decode_yolo

    anchors = 8400 if head == "v8" else 25200
    output = yolo_output(np.random.default_rng(5), 3, anchors, 80, head, extent=640.0)
    transforms = [letterbox_transform(s, (640, 640)) for s in [(1080, 1920), (640, 640), (480, 360)]]
    for conf in (0.25, 0.05):
        want = decode_yolo(output, transforms, head=head, num_classes=80, conf_threshold=conf, iou_threshold=0.6,
                           max_detections=300)
        got = CudaYoloDecoder(80, conf, 0.6, 300)({"output0": torch.from_numpy(output).cuda()}, transforms)
        assert_same_detections(got, want)


# ResDCN-18's three DCN layers at 512 input, and a layer using every option.
DCN_CASES = {
    "resdcn18-512to256-16": (2, 512, 16, 16, 256, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    "resdcn18-256to128-32": (2, 256, 32, 32, 128, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    "resdcn18-128to64-64": (2, 128, 64, 64, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    "stride2-dil2-dg4": (3, 64, 23, 31, 48, (3, 3), (2, 2), (2, 2), (2, 2), 4),
    "rect-dg2": (1, 32, 20, 18, 16, (3, 5), (1, 2), (1, 2), (1, 1), 2),
}


@pytest.mark.parametrize("case", sorted(DCN_CASES))
def test_dcn_matches_torchvision_and_reference(case, torch):
    from trtdet_centernet.dcn import modulated_deform_conv
    from trtdet_centernet.dcn_cuda import DcnShape, dcn_forward_raw, modulated_deform_conv_cuda

    torchvision_ops = pytest.importorskip("torchvision.ops")
    b, c, h, w, oc, kernel, stride, padding, dilation, groups = DCN_CASES[case]
    tensors = dcn_inputs(np.random.default_rng(3), b, c, h, w, oc, kernel, stride, padding, dilation, groups)
    x, offset, mask, weight, bias = (t.cuda() for t in tensors)
    args = (stride, padding, dilation, groups)
    exact = modulated_deform_conv(*(t.double() for t in (x, offset, mask, weight, bias)), *args)
    vision = torchvision_ops.deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding,
                                           dilation=dilation, mask=mask)
    got = modulated_deform_conv_cuda(x, offset, mask, weight, bias, *args)
    torch.testing.assert_close(got.double(), exact, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, vision, rtol=1e-4, atol=1e-4)

    # Raw pointers on a side stream, workspace from the caller (as the TensorRT plugin runs it).
    shape = DcnShape(b, c, h, w, oc, *kernel, *stride, *padding, *dilation, groups)
    out = torch.empty_like(got)
    stream = torch.cuda.Stream()
    from trtdet_centernet.dcn_cuda import dcn_workspace_bytes

    nbytes = dcn_workspace_bytes(shape, 4)
    workspace = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    torch.cuda.current_stream().synchronize()
    dcn_forward_raw(x.data_ptr(), offset.data_ptr(), mask.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                    out.data_ptr(), shape, np.float32, stream.cuda_stream, workspace.data_ptr(), nbytes)
    stream.synchronize()
    torch.testing.assert_close(out, got, rtol=1e-5, atol=1e-5)

    half = modulated_deform_conv_cuda(*(t.half() for t in (x, offset, mask, weight, bias)), *args)
    vision_half = torchvision_ops.deform_conv2d(x.half(), offset.half(), weight.half(), bias.half(), stride=stride,
                                                padding=padding, dilation=dilation, mask=mask.half())
    scale = exact.abs().max().item()
    assert (half.double() - exact).abs().max().item() <= 5e-3 * scale + 5e-3
    assert (half.double() - exact).abs().max().item() <= 2 * (vision_half.double() - exact).abs().max().item() + 1e-3
