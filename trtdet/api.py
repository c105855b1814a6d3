"""``trtdet.load``: the Python entry point that builds a detector for a model."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trtdet.backend_choice import choose_backend
from trtdet.build_options import check_build_options
from trtdet.context import RunContext
from trtdet.contracts.engine import Engine
from trtdet.devices import Device, as_device, check_present, on_device, parse_device, torch_device
from trtdet.errors import ModelError, UsageError
from trtdet.exports import prepare_for_backend
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.model_file import resolve_model_file
from trtdet.models import Model, NoDecoderError
from trtdet.options import DetectorOptions, option_defaults, options_from
from trtdet.pipeline import Detector
from trtdet.plugins import get_model, load_plugins
from trtdet.postprocess.filter import class_filter, class_ids
from trtdet.spec_adapt import adapt_spec
from trtdet.stages import make_decoder, make_preprocessor

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


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


def load(model: str, *, options: DetectorOptions | None = None, **keywords: Any) -> Detector:
    """Build a detector for ``model`` from a checkpoint, ONNX, engine, or the shipped default.

    Returns a callable: ``detector(image)`` -> a ``trtdet.Result`` (a ``Detections`` that knows
    its source, image, class names and per-stage ms) for one image (HWC uint8 BGR array, file
    path or PIL image), ``detector([images])`` -> a list; ``detector.stream(sources)`` yields
    one per frame of files, folders, globs, videos and cameras as ``trtdet run --source`` does.

    * ``model``: a registered model name (``trtdet models``).
    * keywords: the fields of ``trtdet.options.DetectorOptions``, each declared there once with
      its default, range and help (the same text as the CLI flag): ``weights``/``onnx``/``engine``
      (at most one; none: the shipped default), ``backend``, ``device`` (``cpu``, ``cuda``,
      ``cuda:N``), ``conf``, ``iou``, ``classes``, ``max_det``, ``agnostic_nms``, ``input_size``,
      ``precision``, ``cuda_graphs``, ``letterbox`` (``rect``, ``square`` -- alias
      ``ultralytics`` --, ``warp`` or ``stretch``; ``rect`` becomes ``square`` for a model file of
      fixed height and width, as in Ultralytics), ``batch`` (the largest batch sent to the
      engine) and ``build_options`` (``{NAME: VALUE}`` as ``--build-option NAME=VALUE``).
      An unknown keyword is a one-line ``UsageError`` naming the closest option.
    * ``options``: a whole ``DetectorOptions``; every keyword given with it replaces its field,
      even one equal to the default (``precision="fp32"`` over fp16 options is fp32).
    """
    return load_detector(model, options_from(keywords, options))


def _load_signature() -> inspect.Signature:
    """``load``'s signature as ``help()`` and IDEs show it: one keyword per declared option."""
    defaults = option_defaults()
    parameters = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str")]
    for f in dataclasses.fields(DetectorOptions):
        default = None if f.name == "build_options" else defaults[f.name]
        parameters.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=f.type))
    parameters.append(inspect.Parameter("options", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation="DetectorOptions | None"))
    return inspect.Signature(parameters, return_annotation="Detector")


load.__signature__ = _load_signature()  # type: ignore[attr-defined]


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
    info = get_model(model)
    spec = _spec_for(info.spec, options)
    check_build_options(options.build_options)
    device = parse_device(options.device)  # once: the RunContext below holds this Device
    check_present(device)
    model_file = resolve_model_file(spec, options)
    passed_over: list[str] = []
    chosen = choose_backend(options.backend, model_file, device, passed_over)
    model_file = prepare_for_backend(spec, model_file, chosen)
    with on_device(device):  # builds and engines query and allocate on the chosen GPU
        context = run_context(device, options.precision, options.batch, options=options)
        loaded = chosen.load(model_file, spec, options, context)
    return build_detector(
        spec, loaded, device=options.device, batch=options.batch, model_source=str(model_file.path),
        classes=options.classes, max_det=options.max_det, precision=options.precision, model=info.model,
        backend_passed_over=tuple(passed_over), context=context,
    )


def run_context(
    device: str | Device, precision: str, batch: int, *, options: DetectorOptions | None = None
) -> RunContext:
    """The ``RunContext`` of one detector, resolved once: the parsed device and, on a GPU, the
    pipeline's one stream on that GPU (made before any stage, so the backend and every factory see it);
    ``options`` (the ones ``trtdet.load`` was given) ride along as ``context.options``."""
    context = RunContext(as_device(device), precision, batch, options=options)
    if context.is_cuda:
        with on_device(context.device):
            context = context.with_stream(torch.cuda.Stream(device=torch_device(context.device)))
    return context


def build_detector(
    spec: ModelSpec,
    engine: Engine,
    *,
    device: str,
    batch: int = 1,
    model_source: str = "",
    classes: Sequence[str | int] | None = None,
    max_det: int | None = None,
    precision: str = "fp32",
    model: Model | None = None,
    backend_passed_over: tuple[str, ...] = (),
    context: RunContext | None = None,
) -> Detector:
    """The detector around ``engine`` (not yet active): the core pipeline for any engine.

    ``classes`` (names or ids, checked against the adapted spec's class names) keeps only
    those classes, at most ``max_det`` of them per image.

    Activates the engine, adapts ``spec`` to its model file (``spec_adapt.adapt_spec``),
    resolves the ``RunContext`` (device, precision, batch) once and makes the preprocessor and
    decoder from the model object (``model``, or the one registered under ``spec.name``) with
    that adapted spec -- the one spec the detector and everything built from it see.
    ``load_detector`` ends here; so can a caller holding its own engine (e.g.
    ``TorchEngine.from_module`` for a network in training).

    ``device`` may name a GPU (``cuda:1``): everything is built with that GPU current.
    ``context`` is the one ``load_detector`` resolved before loading the engine (None: resolved
    here from ``device``, ``precision`` and ``batch``).
    """
    if context is None:
        context = run_context(device, precision, batch)
    with on_device(context.device):
        engine.activate()
        try:
            spec = adapt_spec(spec, engine)
            decoder = make_decoder(spec, context, model)
            if spec.agnostic_nms and spec.iou_threshold is None:
                raise UsageError(f"model {spec.name!r} runs no NMS, so agnostic NMS does not apply (give an iou threshold to add one)")
            _validate_outputs(decoder, engine, spec, model_source)
            if classes:
                decoder = class_filter(decoder, class_ids(classes, spec.class_names), max_det)
            preprocessor = make_preprocessor(spec, context, model)
        except NoDecoderError as exc:
            engine.deactivate()
            raise ModelError(f"{model_source}: {exc}") from None
        except BaseException:
            engine.deactivate()
            raise
        synchronize = None
        if context.is_cuda:
            import functools


            # Only used when timing stages: wait for this detector's GPU.
            synchronize = functools.partial(torch.cuda.synchronize, torch_device(context.device))
        detector = Detector(
            spec,
            preprocessor,
            engine,
            decoder,
            device=context.device,
            batch=batch,
            model_source=model_source,
            synchronize=synchronize,
            stream=context.stream,
            backend_passed_over=backend_passed_over,
        )
    return detector
