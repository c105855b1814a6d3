"""JPEG decoding on the GPU (nvJPEG via torchvision) against OpenCV's, and `trtdet run --decode cuda`.

Skips with the reason when there is no CUDA GPU or torchvision cannot decode on it.
"""

from __future__ import annotations

import io
import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli
from trtdet.io.images import decode_image_bytes

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("jpegs")
    shutil.copy(photos["grace_hopper"], folder / "a_grace_hopper.jpg")
    shutil.copy(photos["rocket"], folder / "b_rocket.jpg")
    cv2.imwrite(str(folder / "c_astronaut.jpg"), cv2.imread(str(photos["astronaut"])), [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(folder / "d_chelsea_progressive.jpg"), cv2.imread(str(photos["chelsea"])),
                [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    cv2.imwrite(str(folder / "e_camera_gray.jpg"), cv2.imread(str(photos["camera"]), cv2.IMREAD_GRAYSCALE))
    cv2.imwrite(str(folder / "f_coffee.png"), cv2.imread(str(photos["coffee"])))
    from PIL import Image

    rgb = cv2.cvtColor(cv2.imread(str(photos["motorcycle"])), cv2.COLOR_BGR2RGB)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=92)
    (folder / "g_motorcycle_cmyk.jpg").write_bytes(buffer.getvalue())
    data = photos["grace_hopper"].read_bytes()
    (folder / "h_truncated.jpg").write_bytes(data[: len(data) // 2])
    return folder


def test_nvjpeg_matches_opencv_within_decoder_rounding(decoder, jpeg_folder):
    names = ["a_grace_hopper.jpg", "b_rocket.jpg", "c_astronaut.jpg", "d_chelsea_progressive.jpg", "e_camera_gray.jpg"]
    files = [(name, (jpeg_folder / name).read_bytes()) for name in names]
    images = decoder.decode(files)
    stats = {}
    for (name, data), image in zip(files, images, strict=True):
        assert image is not None and image.is_cuda and image.dtype == torch.uint8, name
        want = decode_image_bytes(data, name)
        got = image.cpu().numpy()
        assert got.shape == want.shape, name
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        stats[name] = (float(diff.mean()), float(np.percentile(diff, 99)), int(diff.max()))
    print("mean / p99 / max |nvJPEG - OpenCV| per file:", stats)
    # Two JPEG decoders differ by IDCT and chroma-upsampling rounding, not by content. Seen on
    # the H100: mean 0.0-0.7 levels, p99 0-9, max 46 at sharp colour edges of 4:2:0 files.
    for name, (mean, p99, _) in stats.items():
        assert mean < 1.5 and p99 <= 12, (name, stats[name])


def _match(a: dict, b: dict) -> bool:
    """Same label, score within 0.05, IoU >= 0.85."""
    ax1, ay1, ax2, ay2 = a["box"]
    bx1, by1, bx2, by2 = b["box"]
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 0.05 and inter / union >= 0.85


def _records(result) -> dict[str, dict]:
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["source"].rsplit("/", 1)[-1]: r for r in lines}


def test_run_with_gpu_decoding_reports_like_the_cpu_reader(decoder, jpeg_folder):
    pytest.importorskip("torch")
    runs = {}
    for where in ("cpu", "cuda"):
        result = CliRunner().invoke(cli, ["run", "-m", "yolo", "--device", "cuda", "--decode", where, "-s",
                                          str(jpeg_folder), "--json", "-", "--batch", "4", "-q"])
        assert result.exit_code == 2, result.output  # the truncated file
        runs[where] = _records(result)
    assert sorted(runs["cpu"]) == sorted(runs["cuda"]) == sorted(p.name for p in jpeg_folder.iterdir())
    for name, cpu in runs["cpu"].items():
        gpu = runs["cuda"][name]
        assert (gpu["error"], gpu["width"], gpu["height"]) == (cpu["error"], cpu["width"], cpu["height"]), name
        for ours, theirs in ((gpu, cpu), (cpu, gpu)):
            for det in ours["detections"]:
                if det["score"] >= 0.45:  # clear detections: the other decoder finds the same
                    assert any(_match(det, other) for other in theirs["detections"]), (name, det)
    assert "truncated JPEG" in runs["cuda"]["h_truncated.jpg"]["error"]
