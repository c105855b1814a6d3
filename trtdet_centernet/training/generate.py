"""Write a synthetic shape dataset as images + COCO JSON: ``python -m trtdet_centernet.training.generate``.

The held-out evaluation set of the shipped model is ``--seed 1000 --count 500 --size 512``
(training used seed 0 at 256x256, so no scene is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from trtdet_centernet.training.dataset import write_coco_dataset
from trtdet_centernet.training.synthetic import SceneConfig


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trtdet_centernet.training.generate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="folder for images/ and annotations.json")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument(
        "--size", type=int, nargs="+", default=[512], metavar="H [W]", help="scene size (square if one value)"
    )
    p.add_argument("--jpeg-probability", type=float, default=0.0, help="chance of JPEG artefacts per scene")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    height, width = (args.size * 2)[:2]
    cfg = SceneConfig(height, width, jpeg_probability=args.jpeg_probability)
    path = write_coco_dataset(args.out, args.count, args.seed, cfg, workers=args.workers)
    print(f"{path}: {args.count} scenes {width}x{height}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
