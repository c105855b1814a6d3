"""``trtdet.load``: the Python entry point that builds a detector for a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from trtdet.engines.base import Engine, EngineOptions
from trtdet.errors import ModelError, UsageError
from trtdet.model import ModelSpec
from trtdet.pipeline import Detector
from trtdet.plugins import get_model, load_plugins
from trtdet.resolve import adapt_spec, choose_backend, prepare_for_backend, resolve_model_file


def _output_shapes(engine: Engine, spec: ModelSpec) -> dict[str, tuple]:
    """Declared output shapes, or, when the file leaves them unknown, those of a trial run."""
    shapes = engine.output_shapes
    if all(len(shape) > 0 for shape in shapes.values()):
        return shapes
    height, width = spec.input_size
    outputs = engine(np.zeros((1, 3, height, width), np.float32))
    return {name: tuple(value.shape) for name, value in outputs.items()}  # numpy or torch alike


def load(
    model: str,
    *,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    backend: str = "auto",
    device: str = "cpu",
    conf: float | None = None,
    iou: float | None = None,
    batch: int = 1,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    cuda_graphs: bool = False,
) -> Detector:
    """Build a detector for ``model`` from a checkpoint, ONNX, engine, or the shipped default.

    Returns a callable: ``detector(image)`` -> ``Detections`` for one HWC uint8 BGR image,
    ``detector([images])`` -> a list. ``conf``/``iou`` override the model's thresholds;
    ``batch`` is the largest batch sent to the engine; ``precision`` (fp32/fp16) and
    ``cuda_graphs`` tune GPU backends (graphs are opt-in: the torch backend falls back to
    eager execution for networks that read shapes on the host).
    """
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if precision not in ("fp32", "fp16"):
        raise UsageError(f"precision: expected 'fp32' or 'fp16', got {precision!r}")
    if batch < 1:
        raise UsageError(f"batch: expected >= 1, got {batch}")
    load_plugins()
    spec = get_model(model).spec
    overrides: dict[str, object] = {}
    if conf is not None:
        overrides["conf_threshold"] = float(conf)
    if iou is not None:
        overrides["iou_threshold"] = float(iou)
    if input_size is not None:
        overrides["input_size"] = tuple(input_size)
    spec = dataclasses.replace(spec, **overrides) if overrides else spec
    model_file = resolve_model_file(spec, weights=weights, onnx=onnx, engine=engine, input_size=input_size)
    chosen = choose_backend(backend, model_file, device)
    model_file = prepare_for_backend(spec, model_file, chosen, spec.input_size)
    options = EngineOptions(precision=precision, max_batch=batch, cuda_graphs=cuda_graphs)
    loaded = chosen.load(model_file, spec, device, options)
    return build_detector(spec, loaded, device=device, batch=batch, model_source=str(model_file.path))


def build_detector(spec: ModelSpec, engine: Engine, *, device: str, batch: int = 1, model_source: str = "") -> Detector:
    """The detector around ``engine`` (not yet active): the core pipeline for any engine.

    Activates the engine, adapts ``spec`` to its model file (``resolve.adapt_spec``) and
    resolves the preprocess and decode hooks once from that adapted spec -- the one spec
    the detector and everything built from it see. ``trtdet.load`` ends here; so can a
    caller holding its own engine (e.g. ``TorchEngine.from_module`` for a network in training).
    """
    pm = load_plugins()
    engine.activate()
    try:
        spec = adapt_spec(spec, engine)
        decoder = pm.hook.trtdet_decoder(model=spec, device=device)
        if decoder is None:
            raise ModelError(f"{model_source}: no installed plugin decodes model {spec.name!r}")
        decoder.validate(_output_shapes(engine, spec), model_source)
        preprocessor = pm.hook.trtdet_preprocessor(model=spec, device=device)
    except BaseException:
        engine.deactivate()
        raise
    synchronize = None
    if device == "cuda":
        import torch

        synchronize = torch.cuda.synchronize  # only used when timing stages
    return Detector(
        spec,
        preprocessor,
        engine,
        decoder,
        device=device,
        batch_size=batch,
        model_source=model_source,
        synchronize=synchronize,
    )
