"""One local Ray for the whole session (starting one costs ~5-10 s), with logical GPUs.

Ray lets a CPU machine declare GPUs it does not have; the placement tests check which of
them each actor and replica is given (``CUDA_VISIBLE_DEVICES``). Detection itself runs on
the CPU. Skips without Ray (the ``[ray]`` extra).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="needs the [ray] extra (pip install 'trtdet[ray]')")

#: The detector every Ray test runs: the shipped YOLO11n at a small input, on ONNX Runtime.
MODEL_ARGS = ["-m", "yolo", "--input-size", "256", "256"]
LOAD_KWARGS = {"input_size": (256, 256)}


@pytest.fixture(scope="session")
def ray_session():
    """The session's Ray: 4 logical CPUs (the machine may have 2) and 4 logical GPUs, on loopback only."""
    from trtdet.ray.cluster import loopback_node

    if not ray.is_initialized():
        with loopback_node():
            ray.init(num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def image_set(tmp_path_factory, photos) -> dict[str, object]:
    """~200 inputs: 192 small photos of varied sizes and 8 bad ones (each bad in its own way)."""
    root = tmp_path_factory.mktemp("batch-inputs")
    folder = root / "images"
    folder.mkdir()
    pictures = [cv2.imread(str(photos[name])) for name in ("grace_hopper", "astronaut", "chelsea", "coffee", "motorcycle")]
    good = []
    for i in range(192):
        picture = pictures[i % len(pictures)]
        width = 96 + (i * 7) % 120
        height = max(16, int(width * picture.shape[0] / picture.shape[1]) + (i % 5))
        path = folder / f"img{i:03d}.{'jpg' if i % 3 else 'png'}"
        cv2.imwrite(str(path), cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA))
        good.append(str(path))
    bad_dir = root / "bad"
    bad_dir.mkdir()
    (bad_dir / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9")
    (bad_dir / "empty.png").write_bytes(b"")
    (bad_dir / "notes.jpg").write_text("not an image\n")  # a folder gives image files only: named .jpg
    truncated = (Path(good[1]).read_bytes())
    (bad_dir / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    (bad_dir / "zeros.png").write_bytes(np.zeros(300, np.uint8).tobytes())
    (bad_dir / "clip.mp4").write_bytes(b"not really a video")
    bad = sorted(str(p) for p in bad_dir.iterdir())
    missing = [str(root / "missing.jpg"), str(root / "gone" / "nothing.png")]
    return {"root": root, "sources": [str(folder), str(bad_dir), *missing], "good": good, "bad": bad + missing}
