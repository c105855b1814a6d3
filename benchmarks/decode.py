"""Reading a folder of JPEG photos for a GPU run: OpenCV on one thread, on several, or nvJPEG.

Times (1) decoding alone and (2) the `trtdet run` loop (read ahead + detect, no sinks) over a
folder of 1080p JPEGs made from the test photos, for each way of reading.

    python benchmarks/decode.py --images 256 --workers 8 --model centernet --precision fp16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import torch

import trtdet
from trtdet.io.gpu_jpeg import CudaJpegDecoder
from trtdet.io.sources import FrameReader, expand_sources, iter_frames

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "grace_hopper.jpg"]


def make_folder(photos: Path, count: int) -> Path:
    folder = Path(tempfile.mkdtemp())
    images = [cv2.resize(cv2.imread(str(photos / name)), (1920, 1080)) for name in PHOTOS]
    for n in range(count):
        cv2.imwrite(str(folder / f"{n:05d}.jpg"), images[n % len(images)], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="folder with the test photos")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="centernet")
    parser.add_argument("--precision", default="fp16")
    args = parser.parse_args()

    folder = make_folder(args.photos, args.images)
    sources = expand_sources([str(folder)])
    decoder = CudaJpegDecoder()
    ways = {
        "OpenCV, 1 thread": dict(workers=1, jpeg_decoder=None, chunk=4),
        f"OpenCV, {args.workers} threads": dict(workers=args.workers, jpeg_decoder=None, chunk=4),
        f"nvJPEG, batches of {args.batch}": dict(workers=2, jpeg_decoder=decoder, chunk=args.batch),
    }
    reader = FrameReader(decoder)
    reader.read(sources[: args.batch])  # warm nvJPEG
    rows = []
    detector = trtdet.load(args.model, device="cuda", batch=args.batch, precision=args.precision)
    detector.detect([f.image for f in FrameReader().read(sources[: args.batch])])  # warm the pipeline
    for label, options in ways.items():
        decode_s = timed(lambda o=options: sum(1 for _ in iter_frames(sources, **o)))

        def run(o=options) -> None:
            batch = []
            for frame in iter_frames(sources, **o):
                batch.append(frame.image)
                if len(batch) == args.batch:
                    detector.detect(batch)
                    batch = []
            if batch:
                detector.detect(batch)

        run_s = timed(run)
        rows.append((label, args.images / decode_s, args.images / run_s))
    device = torch.cuda.get_device_name()
    print(f"# Reading {args.images} 1920x1080 JPEGs (quality 90) on {device}\n")
    print(f"Detector: {args.model} {args.precision}, batch {args.batch}, torch backend on CUDA. Command: "
          f"`python benchmarks/decode.py --images {args.images} --workers {args.workers} --model {args.model} "
          f"--precision {args.precision}`\n")
    print("| reading | decode only, images/s | read + detect, images/s |")
    print("|---|---|---|")
    for label, decode_rate, run_rate in rows:
        print(f"| {label} | {decode_rate:.0f} | {run_rate:.0f} |")


if __name__ == "__main__":
    main()
