"""Which model file a run uses: the one the options name, or the model's shipped default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trtdet.contracts.engine import ModelFile, existing_file
from trtdet.errors import ModelError, UsageError
from trtdet.lazy import lazy_import
from trtdet.model import ModelSpec
from trtdet.options import DetectorOptions

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
else:
    onnx = lazy_import("onnx")
    ort = lazy_import("onnxruntime")


def resolve_model_file(spec: ModelSpec, options: DetectorOptions) -> ModelFile:
    """The file to run: ``options.engine``, ``.onnx`` or ``.weights`` (at most one), else the default."""
    if options.engine is not None:
        path = existing_file(options.engine)
        return ModelFile(path, "package" if is_package(path) else "engine")
    if options.onnx is not None:
        return ModelFile(existing_file(options.onnx), "onnx")
    if options.weights is not None:
        return ModelFile(existing_file(options.weights), "weights")
    if spec.default_model is None:
        raise UsageError(f"model {spec.name!r} ships no default model; pass --weights, --onnx or --engine")
    path = Path(spec.default_model())
    if path.suffix == ".engine":
        return ModelFile(path, "engine")
    return ModelFile(path, "package" if path.suffix == ".pt2" else "onnx")


def is_package(path: Path) -> bool:
    """Whether an ``--engine`` file is an AOTInductor package (a zip archive), not a TensorRT engine."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def onnx_file_description(path: Path) -> tuple[dict[str, str], list[int | str]]:
    """An ONNX file's metadata and first input shape (``dim_param`` names for dynamic axes), weights unread.

    Read with the ``onnx`` package, which parses any graph (TensorRT-only operators too): what
    ``trtdet build`` needs. Describing a file that runs here needs only onnxruntime
    (``session_file_description``).
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is the file's problem
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    shape: list[int | str] = []
    if inputs:
        for dim in inputs[0].type.tensor_type.shape.dim:
            shape.append(dim.dim_value if dim.HasField("dim_value") else dim.dim_param or "?")
    return metadata, shape


def session_file_description(path: Path) -> tuple[dict[str, str], list[int | str]]:
    """What ``onnx_file_description`` gives, read from an onnxruntime session (graph optimisations off).

    The CPU path needs no ``onnx`` package: the session exposes the custom metadata and the
    input shape (``dim_param`` names for dynamic axes, ``"?"`` for unnamed ones).
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except ImportError:  # a missing package (imported on first use) is not the input's problem
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        lines = str(exc).strip().splitlines()
        raise ModelError(f"{path}: onnxruntime cannot read it: {lines[0] if lines else type(exc).__name__}") from exc
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    inputs = session.get_inputs()
    shape: list[int | str] = []
    if inputs:
        shape = [dim if isinstance(dim, (int, str)) else "?" for dim in inputs[0].shape]
    return metadata, shape


def default_model_spec(spec: ModelSpec) -> tuple[ModelSpec, Path | None]:
    """``spec`` as its shipped default ONNX file describes it (class names, a fixed input size), and that file.

    A model without a default file (or with a non-ONNX one) comes back as registered, with None.
    """
    from trtdet.spec_adapt import adapt_spec_to_file

    if spec.default_model is None:
        return spec, None
    try:
        path = Path(spec.default_model())
    except ModelError:
        return spec, None
    if path.suffix != ".onnx" or not path.is_file():
        return spec, path if path.is_file() else None
    metadata, shape = session_file_description(path)
    return adapt_spec_to_file(spec, metadata, shape), path


def check_onnx_fits(spec: ModelSpec, path: Path) -> ModelSpec:
    """Raise ``ModelError`` naming ``path`` when its outputs cannot be ``spec``'s head; returns the adapted spec.

    What ``trtdet run`` checks when it loads a model, done on the file alone (declared output
    shapes) so ``trtdet build`` refuses a pairing before spending minutes on an engine.
    Outputs the file declares without a shape are left to the run-time check.
    """
    from trtdet.context import RunContext
    from trtdet.models import NoDecoderError
    from trtdet.spec_adapt import adapt_spec_to_file
    from trtdet.stages import make_decoder

    path = existing_file(path)
    metadata, input_shape = onnx_file_description(path)
    adapted = adapt_spec_to_file(spec, metadata, input_shape)
    model = onnx.load(str(path), load_external_data=False)
    shapes: dict[str, tuple] = {}
    for output in model.graph.output:
        if not output.type.tensor_type.HasField("shape"):
            return adapted
        shapes[output.name] = tuple(
            dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in output.type.tensor_type.shape.dim
        )
    try:
        decoder = make_decoder(adapted, RunContext.of("cpu"))
    except NoDecoderError as exc:
        raise ModelError(f"{path}: {exc}") from None
    decoder.validate(shapes, str(path))
    return adapted
