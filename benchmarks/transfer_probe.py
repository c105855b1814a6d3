"""What moving 1080p frames from host memory to the GPU costs (H200 diagnosis of the preprocess stage).

Times, per frame count: the host memcpy into pinned memory (one thread and several), the
host-to-device copy from pinned and from pageable memory, asking torch whether an array is
pinned, and registering a pageable array with CUDA (``cudaHostRegister``) per call. Then the
preprocessor's way (``trtdet.preprocess.host_copy``): the copy in pieces on 1/2/4/8 threads (the
caller one of them), host only and with each piece uploaded as soon as it is filled.

    python benchmarks/transfer_probe.py
    python benchmarks/transfer_probe.py --host-only   # no GPU: the split memcpy alone
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def best_ms(fn, repeat: int = 20, sync: bool = True) -> float:
    """Median ms of ``fn()`` (the GPU drained after each call unless ``sync`` is False)."""
    fn()
    if sync:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host-only", action="store_true", help="only the split memcpy (no GPU needed)")
    args = parser.parse_args()
    frame = (1080, 1920, 3)
    if args.host_only:
        for count in (1, 32):
            split_copy(count, frame, upload=False)
        return
    print(torch.cuda.get_device_name(), torch.__version__)
    pool = ThreadPoolExecutor(8)
    for count in (1, 32):
        measure(count, frame, pool)
        split_copy(count, frame, upload=True)


def split_copy(count: int, frame: tuple[int, int, int], upload: bool) -> None:
    """The preprocessor's staging copy: pieces over 1/2/4/8 threads, each uploaded when filled (``upload``)."""
    from trtdet.preprocess.host_copy import copy_pieces, plan_pieces, usable_cores

    pageable = np.random.randint(0, 255, (count, *frame), dtype=np.uint8)
    host = torch.empty(pageable.nbytes, dtype=torch.uint8, pin_memory=upload)
    dev = torch.empty(pageable.nbytes, dtype=torch.uint8, device="cuda") if upload else None
    host_np = host.numpy()
    copies = [(k * pageable[k].nbytes, host_np[k * pageable[k].nbytes : (k + 1) * pageable[k].nbytes].reshape(frame),
               pageable[k]) for k in range(count)]
    mb = pageable.nbytes / 1e6

    def send(piece) -> None:
        if dev is not None:
            end = piece.offset + piece.nbytes
            dev[piece.offset : end].copy_(host[piece.offset : end], non_blocking=True)

    print(f"  usable cores: {usable_cores()}")
    for threads in (1, 2, 4, 8):
        pool = ThreadPoolExecutor(threads - 1) if threads > 1 else None
        pieces = plan_pieces(copies, threads)
        ms = best_ms(lambda pieces=pieces, pool=pool: copy_pieces(pieces, pool, send), repeat=50, sync=upload)
        what = "pieces -> pinned + H2D per piece" if upload else "pieces -> staging (host only)"
        print(f"{count:3d} frame(s) {mb:7.1f} MB  {what}, {threads} threads, {len(pieces)} pieces  {ms:8.3f} ms  {mb / ms:6.1f} GB/s")
        if pool is not None:
            pool.shutdown()


def measure(count: int, frame: tuple[int, int, int], pool: ThreadPoolExecutor) -> None:
    pageable = np.random.randint(0, 255, (count, *frame), dtype=np.uint8)
    pinned = torch.empty(pageable.shape, dtype=torch.uint8, pin_memory=True)
    pinned_np = pinned.numpy()
    dev = torch.empty(pageable.shape, dtype=torch.uint8, device="cuda")
    mb = pageable.nbytes / 1e6
    rows = {
        "memcpy pageable->pinned, 1 thread": lambda: np.copyto(pinned_np, pageable),
        "memcpy pageable->pinned, 8 threads": lambda: list(pool.map(
            lambda k: np.copyto(pinned_np.reshape(8, -1)[k], pageable.reshape(8, -1)[k]), range(8))),
        "H2D from pinned": lambda: dev.copy_(pinned, non_blocking=True),
        "H2D from pageable": lambda: dev.copy_(torch.from_numpy(pageable)),
        "copy to pinned + H2D": lambda: (np.copyto(pinned_np, pageable), dev.copy_(pinned, non_blocking=True)),
    }
    for name, fn in rows.items():
        ms = best_ms(fn)
        print(f"{count:3d} frame(s) {mb:7.1f} MB  {name:38s} {ms:8.3f} ms  {mb / ms:6.1f} GB/s")
    checks = 1000
    start = time.perf_counter()
    for _ in range(checks):
        torch.from_numpy(pinned_np).is_pinned()
    print(f"  is_pinned (pinned array): {(time.perf_counter() - start) / checks * 1e6:.1f} us;", end=" ")
    start = time.perf_counter()
    for _ in range(checks):
        torch.from_numpy(pageable).is_pinned()
    print(f"(pageable array): {(time.perf_counter() - start) / checks * 1e6:.1f} us")
    cudart = torch.cuda.cudart()
    one = pageable[0]
    start = time.perf_counter()
    for _ in range(10):
        cudart.cudaHostRegister(one.ctypes.data, one.nbytes, 0)
        cudart.cudaHostUnregister(one.ctypes.data)
    print(f"  cudaHostRegister + unregister of one frame: {(time.perf_counter() - start) / 10 * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
