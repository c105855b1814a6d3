"""Where do fp32 compiled CenterNet outputs part from eager ones? (H200 diagnosis)

Runs the default CenterNet ONNX in fp32 on the test photos through ONNX Runtime (CPU), the eager
torch backend and the inductor package (CUDA), all on the CPU preprocessor's tensor, and prints
the largest difference per output channel group, with TF32 as torch leaves it and with every
TF32 switch off.

    python benchmarks/precision_probe.py
"""

from __future__ import annotations

import numpy as np
import torch

import trtdet
from trtdet.io.images import read_image


def groups(channels: int) -> dict[str, slice]:
    classes = (channels - 4) // 2
    return {"reg": slice(0, 2), "wh": slice(2, 4), "hm": slice(4, 4 + classes), "pool_hm": slice(4 + classes, channels)}


def photos() -> list[np.ndarray]:
    from pathlib import Path

    import matplotlib
    import skimage

    images = Path(skimage.__file__).parent / "data"
    found = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    found += [images / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "camera.png")]
    return [read_image(path) for path in found if path.is_file()]


def main() -> None:
    images = photos()
    cpu = trtdet.load("centernet", device="cpu")
    batch = cpu.preprocessor(images).tensor
    want = next(iter(cpu.engine(batch).values()))
    parts = groups(want.shape[-1])
    print("flags:", "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32",
          torch.backends.cuda.matmul.allow_tf32, "float32_matmul_precision", torch.get_float32_matmul_precision())
    for tf32_off in (False, True):
        if tf32_off:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        for backend in ("torch", "inductor"):
            gpu = trtdet.load("centernet", device="cuda", backend=backend, precision="fp32", batch=8)
            out = next(iter(gpu.engine(torch.from_numpy(batch)).values()))
            got = out.float().cpu().numpy().reshape(want.shape)
            line = [f"tf32 off={tf32_off} {backend:8s} dtype={out.dtype}"]
            for name, part in parts.items():
                diff = np.abs(got[..., part] - want[..., part])
                line.append(f"{name}: max {diff.max():.2e} (|ref| max {np.abs(want[..., part]).max():.2f})")
            print("  ".join(line))
            hm = torch.from_numpy(got[..., parts["hm"]].copy())
            side = int(round(hm.shape[1] ** 0.5))
            grid = hm.reshape(len(images), side, side, -1).permute(0, 3, 1, 2)
            true_pool = torch.nn.functional.max_pool2d(grid, 3, 1, 1).permute(0, 2, 3, 1).reshape(hm.shape)
            pool = torch.from_numpy(got[..., parts["pool_hm"]].copy())
            lost = int(((true_pool == hm) & (pool != hm) & (hm > -3.0)).sum())
            print(f"   peaks (logit > -3) whose pool_hm differs from hm: {lost}; "
                  f"pool_hm != maxpool(hm) anywhere: {int((pool != true_pool).sum())}")
            top = np.sort(got[..., parts["hm"]].reshape(len(images), -1), axis=1)[:, -3:]
            ref = np.sort(want[..., parts["hm"]].reshape(len(images), -1), axis=1)[:, -3:]
            print("   top hm per image:", np.round(top[:, ::-1], 4).tolist(), "ref", np.round(ref[:, ::-1], 4).tolist())
            gpu.close()


if __name__ == "__main__":
    main()
