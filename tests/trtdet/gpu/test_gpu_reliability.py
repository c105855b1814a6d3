"""Hostile inputs on the CUDA paths: pixel bombs never reach nvJPEG or the staging copy, huge
arrays are refused, and submit() racing close() on the overlapped GPU worker strands nothing."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import zlib
from concurrent.futures import wait

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import trtdet
from trtdet.cli.main import cli
from trtdet.errors import ClosedError
from trtdet.io.limits import ENV_MAX_PIXELS

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _png_bomb(path, side: int) -> None:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    packer = zlib.compressobj(1)
    rows = b"\x00" * ((side + 1) * 1000)
    body = b"".join(packer.compress(rows) for _ in range(side // 1000)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _jpeg_header_bomb(path, width: int, height: int) -> None:
    """A baseline JPEG whose frame header declares ``width`` x ``height`` (pixel data: a real 8x8 image)."""
    ok, small = cv2.imencode(".jpg", np.full((8, 8, 3), 100, np.uint8))
    data = bytearray(small.tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("decode", ["cpu", "cuda"])
def test_bombs_on_the_gpu_run_are_refused_and_the_others_run(tmp_path, photos, decode):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["grace_hopper"], folder / "a_good.jpg")
    _png_bomb(folder / "b_bomb.png", 27000)
    _jpeg_header_bomb(folder / "c_bomb.jpg", 60000, 60000)
    cv2.imwrite(str(folder / "d_good.png"), cv2.imread(str(photos["chelsea"])))
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "--device", "cuda", "--decode", decode, "-s", str(folder),
                                      "--json", "-", "--batch", "4", "-q"])
    assert result.exit_code == 2, result.output
    rows = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line) for line in result.stdout.splitlines()}
    assert rows["a_good.jpg"]["error"] is None and rows["d_good.png"]["error"] is None
    assert "image too large: 27000x27000" in rows["b_bomb.png"]["error"]
    assert "image too large: 60000x60000" in rows["c_bomb.jpg"]["error"]


def test_an_array_over_the_limit_never_reaches_the_staging_copy(photos, monkeypatch):
    image = cv2.imread(str(photos["chelsea"]))
    with trtdet.load("yolo", device="cuda", batch=4) as detector:
        monkeypatch.setenv(ENV_MAX_PIXELS, str(image.shape[0] * image.shape[1] - 1))
        with pytest.raises(ValueError, match="image too large"):
            detector(image)
        with pytest.raises(ValueError, match="image too large"):
            detector.submit(image)
        with detector.scheduler() as scheduler:  # the CLI's way in: the pipeline's own guard
            outcomes = scheduler.add(image, "big") + scheduler.drain()
        assert "image too large" in str(outcomes[0].error)
        monkeypatch.delenv(ENV_MAX_PIXELS)
        assert len(detector(image)) > 0


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_submits_racing_close_on_the_overlapped_gpu_worker_all_resolve(photos, cuda_graphs):
    image = cv2.imread(str(photos["chelsea"]))
    for trial in range(30):
        detector = trtdet.load("yolo", device="cuda", batch=8, cuda_graphs=cuda_graphs)
        futures, lock, start = [], threading.Lock(), threading.Barrier(4)

        def client(detector=detector, futures=futures, lock=lock, start=start) -> None:
            start.wait()
            for _ in range(200):
                try:
                    future = detector.submit(image)
                except ClosedError:
                    return
                with lock:
                    futures.append(future)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for thread in threads:
            thread.start()
        start.wait()
        detector.close()
        for thread in threads:
            thread.join(60)
        _, stranded = wait(futures, timeout=60)
        assert not stranded, f"trial {trial}: {len(stranded)} of {len(futures)} futures never resolved"
        assert all(f.cancelled() or len(f.result()) > 0 for f in futures)
        with pytest.raises(ClosedError, match="detector is closed"):
            detector(image)
