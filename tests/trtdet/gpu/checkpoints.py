"""Random-weight CenterNet checkpoints (official layout) for GPU tests and their pre-builds.

    python -m tests.trtdet.gpu.checkpoints DIR     # writes DIR/resdcn18.pth and DIR/resdcn50.pth
"""

from __future__ import annotations

import sys
from pathlib import Path

DEPTHS = (18, 50)


def checkpoint_path(folder: Path, depth: int) -> Path:
    """``folder/resdcn{depth}.pth``, written (seeded, upstream's initialisation) if it is not there."""
    path = Path(folder) / f"resdcn{depth}.pth"
    if path.is_file():
        return path
    import torch

    from trtdet_centernet.network import build_centernet

    torch.manual_seed(depth)
    model = build_centernet(depth, num_classes=80).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


if __name__ == "__main__":
    for depth in DEPTHS:
        print(checkpoint_path(Path(sys.argv[1]), depth))
