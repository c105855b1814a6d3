"""``trtdet.load``: the Python entry point that builds a detector for a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from trtdet.backend_choice import choose_backend
from trtdet.devices import check_present, device_kind, on_device, torch_device
from trtdet.engines.base import Engine
from trtdet.engines.build_steps import check_build_options
from trtdet.errors import ModelError
from trtdet.exports import prepare_for_backend
from trtdet.model import ModelSpec
from trtdet.model_file import resolve_model_file
from trtdet.options import DetectorOptions
from trtdet.pipeline import Detector
from trtdet.plugins import get_model, load_plugins
from trtdet.spec_adapt import adapt_spec


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
    build_options: Mapping[str, str] | None = None,
    options: DetectorOptions | None = None,
) -> Detector:
    """Build a detector for ``model`` from a checkpoint, ONNX, engine, or the shipped default.

    Returns a callable: ``detector(image)`` -> ``Detections`` for one HWC uint8 BGR image,
    ``detector([images])`` -> a list. ``conf``/``iou`` override the model's thresholds;
    ``batch`` is the largest batch sent to the engine; ``precision`` (fp32/fp16) and
    ``cuda_graphs`` tune GPU backends (graphs are opt-in: the torch backend falls back to
    eager execution for networks that read shapes on the host); ``build_options`` choose
    plugins' engine build steps (``{NAME: VALUE}``, as ``--build-option NAME=VALUE``). The keywords are the fields
    of ``trtdet.options.DetectorOptions``; ``options=`` passes one whole, and keywords given
    with it (other than their defaults) override its fields.
    """
    given = dict(
        weights=weights, onnx=onnx, engine=engine, backend=backend, device=device, conf=conf, iou=iou,
        batch=batch, input_size=input_size, precision=precision, cuda_graphs=cuda_graphs,
        build_options=build_options or {},
    )
    options = DetectorOptions(**given) if options is None else options.overriding(**given)
    return load_detector(model, options)


def _spec_for(spec: ModelSpec, options: DetectorOptions) -> ModelSpec:
    """The model's spec with the options' threshold and input-size overrides."""
    overrides: dict[str, object] = {}
    if options.conf is not None:
        overrides["conf_threshold"] = options.conf
    if options.iou is not None:
        overrides["iou_threshold"] = options.iou
    if options.input_size is not None:
        overrides["input_size"] = options.input_size
    return dataclasses.replace(spec, **overrides) if overrides else spec


def load_detector(model: str, options: DetectorOptions) -> Detector:
    """The detector for ``model`` as ``options`` say (``trtdet.load`` once its keywords are one object)."""
    load_plugins()
    spec = _spec_for(get_model(model).spec, options)
    check_build_options(options.build_options)
    check_present(options.device)
    model_file = resolve_model_file(spec, options)
    passed_over: list[str] = []
    chosen = choose_backend(options.backend, model_file, options.device, passed_over)
    model_file = prepare_for_backend(spec, model_file, chosen)
    with on_device(options.device):  # builds and engines query and allocate on the chosen GPU
        loaded = chosen.load(model_file, spec, options)
    detector = build_detector(spec, loaded, device=options.device, batch=options.batch, model_source=str(model_file.path))
    #: Why ``auto`` passed over the backends ranked above the chosen one ("tensorrt: not installed").
    detector.backend_passed_over = tuple(passed_over)
    return detector


def build_detector(spec: ModelSpec, engine: Engine, *, device: str, batch: int = 1, model_source: str = "") -> Detector:
    """The detector around ``engine`` (not yet active): the core pipeline for any engine.

    Activates the engine, adapts ``spec`` to its model file (``spec_adapt.adapt_spec``) and
    resolves the preprocess and decode hooks once from that adapted spec -- the one spec
    the detector and everything built from it see. ``load_detector`` ends here; so can a
    caller holding its own engine (e.g. ``TorchEngine.from_module`` for a network in training).

    ``device`` may name a GPU (``cuda:1``): everything is built with that GPU current, and the
    hooks receive the device kind (``cuda``), as they always have.
    """
    pm = load_plugins()
    kind = device_kind(device)
    with on_device(device):
        engine.activate()
        try:
            spec = adapt_spec(spec, engine)
            decoder = pm.hook.trtdet_decoder(model=spec, device=kind)
            if decoder is None:
                raise ModelError(f"{model_source}: no installed plugin decodes model {spec.name!r}")
            decoder.validate(_output_shapes(engine, spec), model_source)
            preprocessor = pm.hook.trtdet_preprocessor(model=spec, device=kind)
        except BaseException:
            engine.deactivate()
            raise
        synchronize = None
        if kind == "cuda":
            import functools

            import torch

            # Only used when timing stages: wait for this detector's GPU.
            synchronize = functools.partial(torch.cuda.synchronize, torch_device(device))
        detector = Detector(
            spec,
            preprocessor,
            engine,
            decoder,
            device=device,
            batch_size=batch,
            model_source=model_source,
            synchronize=synchronize,
        )
    detector.backend_passed_over = ()
    return detector
