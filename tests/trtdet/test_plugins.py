"""Plugin system: hook meta-tests (every hookspec tested and documented) and plugin loading.

The meta-tests read the hookspecs from ``trtdet.hookspecs`` at collection time, so a hook
added later is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pluggy
import pytest

import trtdet
from trtdet import hookspecs, plugins
from trtdet.context import RunContext
from trtdet.errors import UsageError
from trtdet.hookspecs import hookimpl
from trtdet.model import ModelSpec
from trtdet.preprocess.affine import AffineTransform
from trtdet.preprocess.base import PreprocessedBatch
from trtdet.preprocess.cpu import WarpAffinePreprocessor
from trtdet.stages import make_decoder, make_preprocessor

REPO = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve()
HOOKS_DOC = REPO / "docs" / "hooks.md"
SPEC_MARKER = f"{hookspecs.hookspec.project_name}_spec"
IMPL_MARKER = f"{hookspecs.hookimpl.project_name}_impl"


def _hookspecs() -> dict[str, Callable]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, SPEC_MARKER)
    }


HOOKSPECS = _hookspecs()


def signature_text(function: Callable) -> str:
    """``def name(a: A, b: B) -> R`` as written in the source, on one line."""
    signature = inspect.signature(function)

    def annotation(value: object) -> str:
        return value if isinstance(value, str) else inspect.formatannotation(value)

    params = ", ".join(
        f"{p.name}: {annotation(p.annotation)}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in signature.parameters.values()
    )
    result = "" if signature.return_annotation is inspect.Signature.empty else f" -> {annotation(signature.return_annotation)}"
    return f"def {function.__name__}({params}){result}"


def _test_files() -> list[Path]:
    """Test modules of the core and of the example plugins, except this one."""
    found = list((REPO / "tests").rglob("*.py")) + list((REPO / "examples").glob("*/tests/**/*.py"))
    return [path for path in found if path.resolve() != THIS_FILE]


def _doc_section(name: str) -> str:
    """The part of docs/hooks.md under the heading for ``name`` (up to the next heading of that level)."""
    text = HOOKS_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## `?{re.escape(name)}`?\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return match.group(1) if match else ""


def _trtdet(*args: str, env: dict[str, str] | None = None, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process (plugins load once per process)."""
    environment = {k: v for k, v in os.environ.items() if k != "TRTDET_LOAD_PLUGINS"}
    environment.update(env or {})
    if extra_path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), environment.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def _json(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- meta-tests: every hookspec is tested and documented ---------------------------------------


def test_hookspecs_are_found() -> None:
    assert {"trtdet_register_models", "trtdet_preprocessor", "trtdet_engine_backends", "trtdet_decoder"} <= set(HOOKSPECS)


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_has_a_test(name: str) -> None:
    """Some other test implements the hook (``def name(``), calls it (``.name``) or calls an implementation."""
    used = re.compile(rf"\bdef\s+{name}\s*\(|\.{name}\b|\b{name}\s*\(")
    users = [path for path in _test_files() if used.search(path.read_text(encoding="utf-8"))]
    assert users, f"hookspec {name} is exercised by no test in tests/ or examples/*/tests/ (besides {THIS_FILE.name})"


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_is_documented_with_its_signature(name: str) -> None:
    section = _doc_section(name)
    assert section, f"{HOOKS_DOC}: no '## {name}' section"
    function = HOOKSPECS[name]
    expected = signature_text(function)
    assert expected in " ".join(section.split()), f"{HOOKS_DOC}: section {name} lacks the signature {expected!r}"
    firstresult = getattr(function, SPEC_MARKER)["firstresult"]
    assert f"**firstresult**: {'yes' if firstresult else 'no'}" in section, (
        f"{HOOKS_DOC}: section {name} must say '**firstresult**: {'yes' if firstresult else 'no'}'"
    )


def test_signature_text_is_the_source_text() -> None:
    """The signature the docs are checked against is the one written in hookspecs.py."""
    source = inspect.getsource(hookspecs)
    for name, function in HOOKSPECS.items():
        written = re.search(rf"^def {name}\((.*?)\)(?:\s*->\s*(.*?))?:[ \t]*\n", source, flags=re.M | re.S)
        assert written, f"cannot find 'def {name}(' in hookspecs.py"
        params = " ".join(written.group(1).split()).rstrip(",")
        returns = f" -> {written.group(2).strip()}" if written.group(2) else ""
        assert signature_text(function) == f"def {name}({params}){returns}"


# -- loading: built-ins and entry points -------------------------------------------------------


def _implemented_hooks(module: object) -> set[str]:
    """Hook names a plugin module implements, read from the hookimpl markers themselves."""
    return {name for name in dir(module) if hasattr(getattr(module, name), IMPL_MARKER) and name in HOOKSPECS}


def test_plugins_json_lists_builtins_and_entry_points_with_their_hooks() -> None:
    expected: dict[str, tuple[str, set[str]]] = {
        name: ("trtdet", _implemented_hooks(importlib.import_module(name))) for name in plugins.DEFAULT_PLUGINS
    }
    broken: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP):
        try:
            module = entry_point.load()
        except Exception:  # a broken plugin is listed with its error and no hooks
            broken.add(entry_point.name)
            continue
        expected.setdefault(entry_point.name, (entry_point.dist.metadata["Name"], _implemented_hooks(module)))
    rows = {row["name"]: row for row in _json(_trtdet("plugins", "--json"))}
    assert set(rows) == set(expected) | broken
    for name in broken:
        assert rows[name]["error"] and rows[name]["hooks"] == [], name
    for name, (distribution, hooks) in expected.items():
        assert rows[name]["error"] is None, name
        assert rows[name]["distribution"] == distribution, name
        assert set(rows[name]["hooks"]) == hooks, name
        assert hooks, f"plugin {name} implements no hook"
    assert {"yolo", "centernet"} <= set(rows)


def test_models_json_lists_the_in_repo_models() -> None:
    rows = {row["name"]: row for row in _json(_trtdet("models", "--json"))}
    assert rows["yolo"]["plugin"] == "yolo" and rows["yolo"]["classes"] == 80
    assert rows["centernet"]["plugin"] == "centernet"


def test_models_reports_the_default_files_classes_and_input_size() -> None:
    """The shipped CenterNet is a 7-class shapes model: read its names with onnxruntime, not trtdet."""
    import onnxruntime

    from trtdet.class_names import parse_class_names
    from trtdet_centernet.plugin import DEFAULT_MODEL

    session = onnxruntime.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    names = list(parse_class_names(session.get_modelmeta().custom_metadata_map["names"]))
    height, width = session.get_inputs()[0].shape[2:]
    rows = {row["name"]: row for row in _json(_trtdet("models", "--json"))}
    centernet = rows["centernet"]
    assert (centernet["classes"], centernet["class_names"]) == (len(names), names) and len(names) == 7
    assert centernet["input_size"] == [height, width] and centernet["default_model"] == str(DEFAULT_MODEL)
    table = _trtdet("models").stdout
    line = next(row for row in table.splitlines() if row.startswith("centernet"))
    assert f"7 classes ({', '.join(names)}), input {height}x{width}" in line
    # the shipped CenterNet is a demo (synthetic shapes), and says so; yolo's COCO YOLO11n is not
    assert "[demo weights: synthetic shapes" in line and "not COCO objects" in line
    assert "not COCO" in centernet["demo_weights"] and rows["yolo"]["demo_weights"] is None


def test_models_json_lists_the_example_plugin() -> None:
    if importlib.util.find_spec("trtdet_person") is None:
        pytest.skip("trtdet_person is not installed (pip install -e examples/trtdet-person)")
    rows = {row["name"]: row for row in _json(_trtdet("models", "--json"))}
    person = rows["person"]
    assert (person["plugin"], person["distribution"], person["classes"]) == ("person", "trtdet-person", 1)
    assert person["input_size"] == [640, 640]


@pytest.mark.parametrize(
    ("allowed", "plugins_loaded", "models"),
    [
        # the yolo plugin provides Ultralytics' families: yolo and rtdetr
        ("yolo", {"yolo"}, {"yolo", "rtdetr"}),
        # centernet brings its TensorRT companion from the same package (trtdet_centernet)
        ("centernet, yolo", {"yolo", "centernet", "centernet_tensorrt"}, {"yolo", "rtdetr", "centernet"}),
        ("", set(), set()),
    ],
)
def test_trtdet_load_plugins_restricts_entry_points(allowed: str, plugins_loaded: set[str], models: set[str]) -> None:
    env = {"TRTDET_LOAD_PLUGINS": allowed}
    names = {row["name"] for row in _json(_trtdet("plugins", "--json", env=env))}
    assert names == set(plugins.DEFAULT_PLUGINS) | plugins_loaded
    assert {row["name"] for row in _json(_trtdet("models", "--json", env=env))} == models


def test_trtdet_load_plugins_warns_about_names_matching_nothing() -> None:
    result = _trtdet("models", "--json", env={"TRTDET_LOAD_PLUGINS": "yolo,yollo"})
    assert {row["name"] for row in _json(result)} == {"yolo", "rtdetr"}
    assert "TRTDET_LOAD_PLUGINS: 'yollo' matches no installed plugin or distribution" in result.stderr
    quiet = _trtdet("models", "--json", env={"TRTDET_LOAD_PLUGINS": "yolo,centernet"})
    assert "TRTDET_LOAD_PLUGINS" not in quiet.stderr


def test_trtdet_load_plugins_accepts_a_distribution_name() -> None:
    if importlib.util.find_spec("trtdet_person") is None:
        pytest.skip("trtdet_person is not installed (pip install -e examples/trtdet-person)")
    env = {"TRTDET_LOAD_PLUGINS": "trtdet-person"}
    assert {row["name"] for row in _json(_trtdet("models", "--json", env=env))} == {"person"}


def test_a_model_outside_the_restriction_is_unknown() -> None:
    result = _trtdet("run", "--model", "centernet", env={"TRTDET_LOAD_PLUGINS": "yolo"})
    assert result.returncode == 1
    assert "error: unknown model 'centernet' (known: rtdetr, yolo)" in result.stderr


def _fake_distribution(root: Path, module_source: str) -> Path:
    """An installed-looking distribution on ``root`` declaring ``module_source`` as a trtdet plugin."""
    (root / "fake_trtdet_plugin.py").write_text(module_source, encoding="utf-8")
    info = root / "fake_trtdet_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-trtdet-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[trtdet]\nfake = fake_trtdet_plugin\n", encoding="utf-8")
    return root


BROKEN_PLUGINS = {
    "misspelt-hook": (
        "from trtdet import hookimpl\n\n@hookimpl\ndef trtdet_decodr(model, device):\n    return None\n",
        "PluginValidationError: unknown hook 'trtdet_decodr'",
    ),
    "argument-the-spec-lacks": (
        "from trtdet import hookimpl\n\n@hookimpl\ndef trtdet_decoder(model, device, colour):\n    return None\n",
        "PluginValidationError: ",
    ),
    "register-hook-raises": (
        "from trtdet import hookimpl\n\n@hookimpl\ndef trtdet_register_models(register):\n"
        "    raise RuntimeError('cannot find my weights')\n",
        "RuntimeError: cannot find my weights",
    ),
    "backend-hook-raises": (
        "from trtdet import hookimpl\n\n@hookimpl\ndef trtdet_engine_backends(register):\n"
        "    raise KeyError('gpu')\n",
        "KeyError: 'gpu'",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PLUGINS))
def test_a_broken_entry_point_plugin_is_reported_and_left_out(tmp_path: Path, case: str) -> None:
    """`trtdet models`, `plugins` and `run` keep working; the plugin is named with its problem."""
    source, problem = BROKEN_PLUGINS[case]
    root = _fake_distribution(tmp_path, source)
    models = _trtdet("models", "--json", extra_path=root)
    assert models.returncode == 0, models.stderr
    assert {"yolo", "centernet"} <= {row["name"] for row in json.loads(models.stdout)}
    warning = [line for line in models.stderr.splitlines() if "fake" in line]
    assert warning and "'fake' (fake-trtdet-plugin) failed to load: " + problem in warning[0]
    assert "Traceback" not in models.stderr
    rows = {row["name"]: row for row in _json(_trtdet("plugins", "--json", extra_path=root))}
    assert rows["fake"]["hooks"] == [] and rows["fake"]["error"].startswith(problem)
    assert rows["yolo"]["error"] is None
    run = _trtdet("run", "-m", "yolo", "-s", str(REPO / "trtdet" / "data" / "sample.jpg"), "--json", "-", "-q",
                  extra_path=root)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0])["error"] is None


def test_an_entry_point_plugin_that_cannot_import_is_skipped_with_a_warning(tmp_path: Path) -> None:
    source = "raise ImportError('needs libfoo')\n"
    result = _trtdet("models", "--json", extra_path=_fake_distribution(tmp_path, source))
    assert "'fake' (fake-trtdet-plugin) failed to load: ImportError: needs libfoo" in result.stderr
    assert {"yolo", "centernet"} <= {row["name"] for row in _json(result)}


def test_trtdet_plugins_shows_a_plugin_that_failed_to_load(tmp_path: Path) -> None:
    root = _fake_distribution(tmp_path, "raise ImportError('needs libfoo')\n")
    rows = {row["name"]: row for row in _json(_trtdet("plugins", "--json", extra_path=root))}
    assert rows["fake"] == {"name": "fake", "hooks": [], "error": "ImportError: needs libfoo"}
    assert rows["yolo"]["error"] is None and rows["yolo"]["hooks"]
    text = _trtdet("plugins", extra_path=root)
    assert text.returncode == 0
    assert "fake: failed to load: ImportError: needs libfoo" in text.stdout.splitlines()


# -- registering at run time -------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[Callable[[object, str], None]]:
    """``register(plugin, name)`` through trtdet's own path; unregistered after the test."""
    names: list[str] = []

    def register(plugin: object, name: str) -> None:
        names.append(name)
        plugins.register_plugin(plugin, name=name)

    yield register
    for name in names:
        plugins.unregister_plugin(name)


def test_a_misspelt_hookimpl_fails_check_pending(registered) -> None:
    class Misspelt:
        @hookimpl
        def trtdet_decodr(self, model, device):
            return None

    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'trtdet_decodr'"):
        registered(Misspelt(), "misspelt-test")


def test_a_fresh_manager_configured_like_trtdets_rejects_a_misspelt_hookimpl() -> None:
    class Misspelt:
        @hookimpl
        def trtdet_register_model(self, register):
            return None

    manager = pluggy.PluginManager(plugins.pm.project_name)
    manager.add_hookspecs(hookspecs)
    manager.register(Misspelt(), name="misspelt")
    with pytest.raises(pluggy.PluginValidationError, match="trtdet_register_model"):
        manager.check_pending()


def test_a_hookimpl_with_wrong_argument_names_is_rejected(registered) -> None:
    class WrongArguments:
        @hookimpl
        def trtdet_decoder(self, spec, device):
            return None

    with pytest.raises(pluggy.PluginValidationError, match="spec"):
        registered(WrongArguments(), "wrong-arguments-test")


def test_a_model_registered_twice_names_both_plugins(registered) -> None:
    class Duplicate:
        @hookimpl
        def trtdet_register_models(self, register):
            register(ModelSpec(name="yolo", class_names=("thing",), input_size=(64, 64)))

    registered(Duplicate(), "duplicate-test")
    with pytest.raises(UsageError) as error:
        plugins.list_models()
    message = str(error.value)
    assert "'yolo' is registered twice" in message
    assert "by 'yolo'" in message and "by 'duplicate-test'" in message


def test_get_model_unknown_name_lists_the_known_ones_and_a_close_match() -> None:
    known = sorted(plugins.list_models())
    with pytest.raises(UsageError) as error:
        plugins.get_model("yolo11")
    assert str(error.value) == f"unknown model 'yolo11' (known: {', '.join(known)}); did you mean 'yolo'?"
    with pytest.raises(UsageError, match=r"^unknown model 'qqqqqq' \(known: [^)]*\)$"):
        plugins.get_model("qqqqqq")


class StretchPreprocessor:
    """Resize without letterbox (aspect not kept): a preprocessor the core does not have."""

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = input_size
        self.calls = 0

    def __call__(self, images: Sequence[np.ndarray]) -> PreprocessedBatch:
        self.calls += 1
        height, width = self.input_size
        tensors, transforms = [], []
        for image in images:
            sy, sx = height / image.shape[0], width / image.shape[1]
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            tensors.append(resized[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
            # cv2.resize maps pixel centres as x_dst = sx * x_src + (sx - 1) / 2; box edges simply scale.
            matrix = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2]])
            inverse = np.array([[1 / sx, 0, 0], [0, 1 / sy, 0]])
            transforms.append(AffineTransform(matrix, inverse, image.shape[:2], (height, width)))
        return PreprocessedBatch(np.ascontiguousarray(np.stack(tensors)), transforms)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_a_runtime_plugin_overrides_the_preprocessor_of_its_own_model_only(registered, photos) -> None:
    yolo = plugins.get_model("yolo").spec
    stretch = dataclasses.replace(yolo, name="stretch-yolo-test", description="YOLO11n without letterbox")

    class StretchPlugin:
        @hookimpl
        def trtdet_register_models(self, register):
            register(stretch)

        @hookimpl
        def trtdet_preprocessor(self, model, device):
            return StretchPreprocessor(model.input_size) if model.name == stretch.name else None

        @hookimpl
        def trtdet_decoder(self, model, device):
            if model.name != stretch.name:
                return None
            return make_decoder(dataclasses.replace(model, name="yolo"), RunContext.of(device))

    # A plugin written against the pre-0.2 hooks (a bare spec, trtdet_preprocessor/trtdet_decoder).
    registered(StretchPlugin(), "stretch-test")
    pm = plugins.load_plugins()
    # First non-None result wins over the model object's (the core's letterbox) preprocessor ...
    assert isinstance(pm.hook.trtdet_preprocessor(model=stretch, device="cpu"), StretchPreprocessor)
    with pytest.warns(DeprecationWarning, match="'stretch-test' answers the deprecated trtdet_preprocessor hook"):
        assert isinstance(make_preprocessor(stretch, RunContext.of("cpu")), StretchPreprocessor)
    # ... which still answers for every other model.
    assert isinstance(make_preprocessor(yolo, RunContext.of("cpu")), WarpAffinePreprocessor)

    image = cv2.imread(str(photos["grace_hopper"]))
    with trtdet.load(stretch.name) as stretched, trtdet.load("yolo") as letterboxed:
        assert isinstance(stretched.preprocessor, StretchPreprocessor)
        assert isinstance(letterboxed.preprocessor, WarpAffinePreprocessor)
        got, reference = stretched(image), letterboxed(image)
        assert stretched.preprocessor.calls == 1
    # A different but valid preprocessing of the same portrait finds the same person.
    person, reference_person = got[got.class_id == 0], reference[reference.class_id == 0]
    assert len(person) == 1 and len(reference_person) == 1
    assert _iou(person.xyxy[0], reference_person.xyxy[0]) > 0.9


def test_a_runtime_engine_backend_is_listed_and_chosen_by_auto(registered, yolo_onnx: Path) -> None:
    from trtdet.backend_choice import choose_backend
    from trtdet.contracts.engine import ModelFile
    from trtdet.engines.onnxruntime_backend import OnnxRuntimeBackend

    class CountingBackend(OnnxRuntimeBackend):
        name = "counting-test"
        priority = 10_000
        loads = 0

        def load(self, *args, **kwargs):
            CountingBackend.loads += 1
            return super().load(*args, **kwargs)

    class BackendPlugin:
        @hookimpl
        def trtdet_engine_backends(self, register):
            register(CountingBackend())

    registered(BackendPlugin(), "counting-backend-test")
    backends = plugins.list_engine_backends()
    assert {"onnxruntime", "counting-test"} <= set(backends)
    assert choose_backend("auto", ModelFile(yolo_onnx, "onnx"), "cpu").name == "counting-test"
    with trtdet.load("yolo") as detector:
        assert detector.backend == "onnxruntime"  # the engine it returned is ONNX Runtime's
    assert CountingBackend.loads == 1


def test_a_plugin_left_out_is_one_tidy_warning_line_and_named_by_an_unknown_model(tmp_path: Path) -> None:
    """No ``file:line: UserWarning`` and no stray source line; ``unknown model 'fake'`` says that plugin failed."""
    root = _fake_distribution(tmp_path, "raise ImportError('needs libfoo')\n")
    models = _trtdet("models", extra_path=root)
    lines = [line for line in models.stderr.splitlines() if line.strip()]
    assert lines == ["warning: trtdet plugin 'fake' (fake-trtdet-plugin) failed to load: ImportError: needs libfoo"]
    run = _trtdet("run", "-m", "fake", "-q", extra_path=root)
    assert run.returncode == 1
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "unknown model 'fake'" in error[0]
    assert "plugin 'fake' failed to load: ImportError: needs libfoo" in error[0]
