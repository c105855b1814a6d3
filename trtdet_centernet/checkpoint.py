"""Load official-format CenterNet ResNet-DCN checkpoints safely and check them against the network.

Checkpoints are untrusted files: they are read with ``torch.load(weights_only=True)``, which
refuses any pickled object other than tensors and plain containers, so no code in the file
runs. Accepted layouts: ``{"epoch", "state_dict"}`` (upstream ``save_model``), a dict with a
``"model"`` state dict, or a bare state dict; keys may start with ``module.`` (DataParallel).
Every problem becomes one ``ModelError("<path>: ...")`` line.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtdet.errors import ModelError
from trtdet.lazy import lazy_import

if TYPE_CHECKING:
    import torch

    from trtdet_centernet.network import CenterNetResDCN

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

#: Keys any ResNet-DCN ctdet checkpoint has.
_REQUIRED = ("conv1.weight", "layer1.0.conv1.weight", "deconv_layers.0.weight", "hm.0.weight", "hm.2.weight")
_LIST_LIMIT = 5
#: How torch's weights-only unpickler names a global it refuses, in old and current wordings.
_UNSUPPORTED_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about the network it belongs to."""

    depth: int
    num_classes: int
    head_conv: int
    epoch: int | None
    #: Class names saved beside the weights (trtdet's training writes them), else None.
    class_names: tuple[str, ...] | None = None


def _short_list(items: list[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not a checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        # torch < 2.6 said "Unsupported global: GLOBAL posix.system"; torch 2.6+ says
        # "unsupported GLOBAL posix.system whose module posix is blocked" (or "... was not an
        # allowed global by default").
        match = _UNSUPPORTED_GLOBAL.search(detail)
        if match and "ultralytics" in match.group(1).lower():
            raise ModelError(
                f"{path}: this is an Ultralytics YOLO checkpoint, not CenterNet weights "
                "(use --model yolo with its ONNX export)"
            ) from None
        if match:
            raise ModelError(
                f"{path}: refused to load: the file pickles {match.group(1)}, not just tensors, and loading it "
                "could run code (checkpoints are read with torch.load(weights_only=True))"
            ) from None
        raise ModelError(
            f"{path}: not a PyTorch checkpoint written by torch.save (unreadable pickle)"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError, ... for non-checkpoints
        first = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        truncated = ("zip archive", "central directory", "unexpected EOF", "corrupted")
        if isinstance(exc, EOFError) or any(marker in first for marker in truncated):
            raise ModelError(f"{path}: truncated or corrupt checkpoint ({first.split('. ')[0]})") from None
        raise ModelError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {first[:120]})") from None


def _class_names_of(obj: Any) -> tuple[str, ...] | None:
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _state_dict_of(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    epoch = None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        kind = type(obj).__name__
        raise ModelError(
            f"{path}: not a CenterNet checkpoint (expected a dict with a 'state_dict', got {kind})"
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path}: not a CenterNet checkpoint (its dict holds no tensors)")
    state = {}
    for key, value in tensors.items():
        state[key[len("module.") :] if key.startswith("module.") else key] = value
    return state, epoch


def _identify(path: Path, state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(depth, num_classes, head_conv) from the keys and shapes, or a ModelError saying what it is."""
    from trtdet_centernet.network import RESNET_SPEC

    keys = list(state)
    if any(k.startswith("base.base_layer") or k.startswith("dla_up.") for k in keys):
        raise ModelError(
            f"{path}: a CenterNet DLA-34 checkpoint; only ResNet-DCN (resdcn18/34/50/101) is supported"
        )
    if any(k.startswith("model.") and ".cv" in k for k in keys) or any(
        k.startswith("model.0.") for k in keys
    ):
        raise ModelError(
            f"{path}: this looks like YOLO weights (keys like {keys[0]!r}), not a CenterNet checkpoint"
        )
    if "hm.weight" in state:
        raise ModelError(f"{path}: head_conv=0 checkpoints (a single 1x1 conv per head) are not supported")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ModelError(
            f"{path}: not a CenterNet ResNet-DCN checkpoint: missing {_short_list(missing)} "
            f"(found keys like {_short_list(keys, 3)})"
        )
    blocks = []
    for stage in range(1, 5):
        prefix = f"layer{stage}."
        indices = {int(k[len(prefix) :].split(".", 1)[0]) for k in keys if k.startswith(prefix)}
        blocks.append(len(indices))
    bottleneck = "layer1.0.conv3.weight" in state
    depth = next(
        (
            d
            for d, (block, layout) in RESNET_SPEC.items()
            if tuple(blocks) == layout and (block.__name__ == "Bottleneck") == bottleneck
        ),
        None,
    )
    if depth is None:
        raise ModelError(
            f"{path}: ResNet trunk with {blocks} {'bottleneck' if bottleneck else 'basic'} blocks per stage "
            f"matches no supported depth ({', '.join(map(str, RESNET_SPEC))})"
        )
    hm_out = state["hm.2.weight"]
    if hm_out.ndim != 4:
        raise ModelError(f"{path}: hm.2.weight has shape {tuple(hm_out.shape)}, expected a 4-D conv weight")
    return depth, int(hm_out.shape[0]), int(state["hm.0.weight"].shape[0])


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read ``path`` without running pickled code; return its state dict (no ``module.``) and info."""
    path = Path(path)
    raw = _read(path)
    state, epoch = _state_dict_of(path, raw)
    depth, num_classes, head_conv = _identify(path, state)
    names = _class_names_of(raw)
    if names is not None and len(names) != num_classes:
        raise ModelError(f"{path}: checkpoint lists {len(names)} class names but its hm head has {num_classes} classes")
    return state, CheckpointInfo(depth, num_classes, head_conv, epoch, names)


def check_state_dict(path: Path | str, model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise one ModelError listing missing, unexpected and mis-shaped keys (if any).

    BatchNorm ``num_batches_tracked`` counters may be absent: the official checkpoints come
    from PyTorch 0.4, which had none, and they do not affect inference.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_short_list(misshaped, 3)}")
    if problems:
        raise ModelError(f"{path}: checkpoint does not fit the ResNet-DCN CenterNet: {'; '.join(problems)}")


def build_from_checkpoint(path: Path | str) -> tuple[CenterNetResDCN, int, int]:
    """The network of ``path`` with its weights loaded, in eval mode: ``(model, num_classes, depth)``."""
    from trtdet_centernet.network import build_centernet

    state, info = load_checkpoint(path)
    model = build_centernet(depth=info.depth, num_classes=info.num_classes, head_conv=info.head_conv)
    check_state_dict(path, model, state)
    model.load_state_dict(state, strict=False)
    model.eval()
    from trtdet_centernet.coco_names import class_names_for

    model.class_names = info.class_names or class_names_for(info.num_classes)
    return model, info.num_classes, info.depth
