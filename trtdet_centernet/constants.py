"""CenterNet ctdet facts, written once (checked against xingyizhou/CenterNet; DESIGN.md section 3).

The plugin's ``ModelSpec``, the decoders, the exporter, training and the benchmarks read them
from here.
"""

from __future__ import annotations

#: Network input (H, W) of the official 512 letterbox.
INPUT_SIZE = (512, 512)
#: Per-channel mean and std in the network's BGR order, applied as ``(x / 255 - mean) / std``.
MEAN = (0.40789654, 0.44719302, 0.47026115)
STD = (0.28863828, 0.27408164, 0.27809835)
#: Warp border value (before normalisation).
BORDER_VALUE = 0
#: Down ratio: output cells are ``STRIDE`` input pixels apart.
STRIDE = 4
#: The ResNet trunk downsamples 32x before the deconvolutions bring it back to ``STRIDE``:
#: the input's height and width must be multiples of this.
INPUT_MULTIPLE = 32
#: Upstream's ``vis_thresh`` for its demo: the score above which a detection is shown.
DEFAULT_THRESHOLD = 0.3
#: Upstream's top-K.
DEFAULT_K = 100
