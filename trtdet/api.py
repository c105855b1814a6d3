"""``trtdet.load``: the Python entry point that builds a detector for a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from trtdet.backend_choice import choose_backend
from trtdet.devices import check_present, device_kind, on_device, torch_device
from trtdet.engines.base import Engine
from trtdet.engines.build_steps import check_build_options
from trtdet.errors import ModelError, UsageError
from trtdet.exports import prepare_for_backend
from trtdet.model import ModelSpec
from trtdet.model_file import resolve_model_file
from trtdet.options import DetectorOptions
from trtdet.pipeline import Detector
from trtdet.plugins import get_model, load_plugins
from trtdet.postprocess.filter import ClassFilter, class_ids
from trtdet.spec_adapt import adapt_spec


def _output_shapes(engine: Engine, spec: ModelSpec) -> dict[str, tuple]:
    """Declared output shapes, or, when the file leaves them unknown, those of a trial run."""
    shapes = engine.output_shapes
    if all(len(shape) > 0 for shape in shapes.values()):
        return shapes
    return _trial_shapes(engine, spec)


def _trial_shapes(engine: Engine, spec: ModelSpec) -> dict[str, tuple]:
    """The output shapes of one run on a zero image at the spec's input size."""
    height, width = spec.input_size
    outputs = engine(np.zeros((1, 3, height, width), np.float32))
    return {name: tuple(value.shape) for name, value in outputs.items()}  # numpy or torch alike


def _validate_outputs(decoder, engine: Engine, spec: ModelSpec, source: str) -> None:
    """``decoder.validate`` on the declared shapes; when those have named (symbolic) dimensions beyond
    the batch and do not fit, on a trial run's (an unsimplified Ultralytics export names every
    dimension: ``['batch', 'Concatoutput0_dim_1', 'anchors']``)."""
    shapes = _output_shapes(engine, spec)
    try:
        decoder.validate(shapes, source)
    except ModelError:
        if all(isinstance(d, int) for shape in shapes.values() for d in shape[1:]):
            raise
        decoder.validate(_trial_shapes(engine, spec), source)


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
    cuda_graphs: bool | None = None,
    classes: Sequence[str | int] | None = None,
    max_det: int | None = None,
    agnostic_nms: bool = False,
    letterbox: str | None = None,
    build_options: Mapping[str, str] | None = None,
    options: DetectorOptions | None = None,
) -> Detector:
    """Build a detector for ``model`` from a checkpoint, ONNX, engine, or the shipped default.

    Returns a callable: ``detector(image)`` -> ``Detections`` for one image (HWC uint8 BGR
    array, file path or PIL image), ``detector([images])`` -> a list; ``detector.stream(sources)``
    runs over files, folders, globs, videos and cameras as ``trtdet run --source`` does.

    * ``model``: a registered model name (``trtdet models``).
    * ``weights`` / ``onnx`` / ``engine``: the model file, at most one (none: the shipped default).
    * ``backend``: ``auto`` or an engine backend name; ``device``: ``cpu`` or ``cuda``.
    * ``conf`` / ``iou``: score and NMS IoU thresholds in [0, 1] (default: the model's).
    * ``batch``: the largest batch sent to the engine.
    * ``input_size``: the network input, (H, W) or one int for a square (default: the model's).
    * ``precision`` (fp32/fp16) and ``cuda_graphs`` tune GPU backends (graphs: None lets the
      backend decide -- on for ``inductor`` packages, off for eager torch, which falls back to
      eager execution for networks that read shapes on the host).
    * ``classes``: keep only these classes (names or ids); ``max_det``: at most this many
      detections per image; ``agnostic_nms``: NMS across classes (models that run NMS).
    * ``letterbox``: the preprocess geometry, ``"rect"``, ``"square"`` (alias ``"ultralytics"``),
      ``"warp"`` or ``"stretch"`` (default: the model's; ``rect`` becomes ``square`` for a model
      file of fixed height and width, as in Ultralytics).
    * ``build_options``: plugins' engine build steps, ``{NAME: VALUE}`` as ``--build-option NAME=VALUE``.
    * ``options``: a whole ``trtdet.options.DetectorOptions`` (the keywords are its fields);
      keywords given with it, other than their defaults, override its fields.
    """
    given = dict(
        weights=weights, onnx=onnx, engine=engine, backend=backend, device=device, conf=conf, iou=iou,
        batch=batch, input_size=input_size, precision=precision, cuda_graphs=cuda_graphs, letterbox=letterbox,
        classes=None if classes is None else tuple(classes), max_det=max_det, agnostic_nms=agnostic_nms,
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
    if options.max_det is not None:
        # With a class filter the decoder keeps the model's usual number too, so the filter
        # still has max_det of the wanted classes to choose from (ClassFilter caps to max_det).
        keep = max(options.max_det, spec.max_detections) if options.classes else options.max_det
        overrides["max_detections"] = keep
    if options.agnostic_nms:
        overrides["agnostic_nms"] = True
    if options.letterbox is not None:
        overrides["letterbox"] = options.letterbox
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
    detector = build_detector(
        spec, loaded, device=options.device, batch=options.batch, model_source=str(model_file.path),
        classes=options.classes, max_det=options.max_det,
    )
    #: Why ``auto`` passed over the backends ranked above the chosen one ("tensorrt: not installed").
    detector.backend_passed_over = tuple(passed_over)
    return detector


def build_detector(
    spec: ModelSpec,
    engine: Engine,
    *,
    device: str,
    batch: int = 1,
    model_source: str = "",
    classes: Sequence[str | int] | None = None,
    max_det: int | None = None,
) -> Detector:
    """The detector around ``engine`` (not yet active): the core pipeline for any engine.

    ``classes`` (names or ids, checked against the adapted spec's class names) keeps only
    those classes, at most ``max_det`` of them per image.

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
            if spec.agnostic_nms and spec.iou_threshold is None:
                raise UsageError(f"model {spec.name!r} runs no NMS, so agnostic NMS does not apply (give an iou threshold to add one)")
            _validate_outputs(decoder, engine, spec, model_source)
            if classes:
                decoder = ClassFilter(decoder, class_ids(classes, spec.class_names), max_det)
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
