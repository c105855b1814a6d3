"""CPU JPEG decoding: trtdet's reader (simplejpeg, libjpeg's warnings kept) vs the cv2.imdecode it replaced.

Side by side in one process, rounds interleaved (old, new, old, new, ...) so both see the same
machine load; the median of the rounds is reported. Then both read the whole set on 1 and 2
threads (``trtdet run --workers``), which shows both release the GIL.

    python benchmarks/jpeg_decode_cpu.py [--rounds 9] [--out benchmarks/results/jpeg_decode_cpu.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from trtdet.io.images import decode_image, to_bgr_uint8


def opencv_decode(data: bytes, source: str) -> np.ndarray:
    """What ``decode_image_bytes`` did before: ``cv2.imdecode(IMREAD_COLOR)`` and the BGR conversion."""
    return to_bgr_uint8(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), source)


def trtdet_decode(data: bytes, source: str) -> np.ndarray:
    return decode_image(data, source).image


def photos() -> dict[str, bytes]:
    import matplotlib

    found = {name: Path(str(files("skimage") / "data" / name)).read_bytes()
             for name in ("rocket.jpg", "hubble_deep_field.jpg", "retina.jpg")}
    found["grace_hopper.jpg"] = (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()
    frame = cv2.resize(cv2.imread(str(files("skimage") / "data" / "astronaut.png")), (1920, 1080))
    for name, params in {
        "1080p q90 4:2:0": [cv2.IMWRITE_JPEG_QUALITY, 90],
        "1080p q95 4:4:4": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
        "1080p progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        "1080p gray": None,
    }.items():
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if params is None else frame
        found[name] = cv2.imencode(".jpg", image, params or [])[1].tobytes()
    return found


def per_image_ms(decode, data: bytes, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        decode(data, "x.jpg")
    return (time.perf_counter() - started) / repeats * 1e3


def images_per_second(decode, datas: list[bytes], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda d: decode(d, "x.jpg"), datas))
    return len(datas) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    found = photos()
    rows = []
    for name, data in found.items():
        assert np.array_equal(opencv_decode(data, name), trtdet_decode(data, name)), name
        height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        repeats = max(3, int(4e6 / (height * width)))
        old, new = [], []
        for _ in range(args.rounds):
            old.append(per_image_ms(opencv_decode, data, repeats))
            new.append(per_image_ms(trtdet_decode, data, repeats))
        o, n = statistics.median(old), statistics.median(new)
        rows.append(f"| {name} | {width}x{height} | {o:.2f} | {n:.2f} | {(n / o - 1) * 100:+.0f}% |")
    mixed = [data for data in found.values()] * 12
    threads = []
    for count in (1, 2):
        old = statistics.median(images_per_second(opencv_decode, mixed, count) for _ in range(3))
        new = statistics.median(images_per_second(trtdet_decode, mixed, count) for _ in range(3))
        threads.append(f"| {count} | {old:.0f} | {new:.0f} |")
    lines = [
        "# CPU JPEG decoding: simplejpeg (libjpeg's warnings kept) vs cv2.imdecode",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores "
        f"(shared), Python {platform.python_version()}, OpenCV {cv2.__version__}, simplejpeg {simplejpeg.__version__}. "
        f"Median of {args.rounds} interleaved rounds; pixels checked equal first.",
        "",
        "`python benchmarks/jpeg_decode_cpu.py`",
        "",
        "| photo | size | cv2.imdecode ms | trtdet (simplejpeg) ms | change |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"All {len(found)} photos x 12, decoded on a thread pool (images/s, median of 3):",
        "",
        "| threads | cv2.imdecode | trtdet (simplejpeg) |",
        "|---|---|---|",
        *threads,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
