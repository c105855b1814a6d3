"""``--weights best.pt`` for Ultralytics checkpoints: Ultralytics' own exporter when installed, one line otherwise."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
ROOT = Path(__file__).resolve().parents[2]


def _without_ultralytics(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`trtdet ARGS` in a child where ``import ultralytics`` fails, whatever is installed here."""
    blocker = tmp_path / "block"
    blocker.mkdir(exist_ok=True)
    (blocker / "ultralytics.py").write_text("raise ImportError('ultralytics blocked for this test')\n")
    code = f"import sys; sys.path.insert(0, {str(blocker)!r}); from trtdet.cli.main import main; sys.argv[0] = 'trtdet'; main()"
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'examples' / 'trtdet-person'}", "TRTDET_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("model", ["yolo", "rtdetr"])
def test_a_checkpoint_without_ultralytics_is_one_line_saying_what_to_do(tmp_path, model):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"not read: the exporter is missing")
    result = _without_ultralytics(tmp_path, "run", "--model", model, "--weights", str(weights), "--quiet")
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0] == (
        f"error: {weights}: exporting an Ultralytics checkpoint needs the ultralytics package "
        f"(pip install 'trtdet[ultralytics]', AGPL-3.0); or export it yourself with "
        f"`yolo export model={weights} format=onnx dynamic=True` and pass --onnx {tmp_path / 'best.onnx'}"
    )


def test_the_extra_is_optional_and_named_ultralytics():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("ultralytics") for dep in project["dependencies"])
    assert project["optional-dependencies"]["ultralytics"] == ["ultralytics>=8.4,<8.5"]


def _saved_and_predicted(model, loader, weights: Path) -> tuple[Path, Path, list[dict]]:
    """``model`` saved as the checkpoint ``weights``; the motorcycle photo; what Ultralytics' ``predict`` on that
    checkpoint (loaded back by ``loader``) detects in it, on the CPU."""
    from tests.trtdet_yolo.ultralytics_cases import CASES, make_case

    model.save(str(weights))
    image = make_case(next(c for c in CASES if c.name == "motorcycle"), weights.parent)
    (theirs,) = loader(str(weights)).predict(str(image), device="cpu", verbose=False)
    boxes = theirs.boxes
    want = [{"box": b, "score": s, "class_id": int(c)}
            for b, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)]
    return weights, image, want


@pytest.mark.ultralytics
@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="needs the ultralytics package (pip install 'trtdet[ultralytics]')")
@pytest.mark.parametrize("arch", ["yolo26n.yaml", "yolo11n.yaml"])
def test_a_checkpoint_runs_as_ultralytics_predicts_it(tmp_path, monkeypatch, arch):
    """Exported once by Ultralytics, cached by sha256, and the detections of `predict` on the .pt."""
    import torch
    from ultralytics import YOLO

    # the families' box test: random end-to-end heads give inverted boxes (x2 < x1), which IoU cannot match
    from tests.trtdet_yolo.test_ultralytics_families import parity_problems

    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    from tests.data.make_ultralytics_families import spread_scores

    torch.manual_seed(0)
    model = YOLO(arch)
    spread_scores(model.model, seed=1)  # random weights score ~1e-4 everywhere otherwise
    weights, image, want = _saved_and_predicted(model, YOLO, tmp_path / "best.pt")
    runs = []
    for _ in range(2):
        result = CliRunner().invoke(cli, ["run", "--model", "yolo", "--weights", str(weights), "--source", str(image),
                                          "--json", "-", "--quiet"])
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout.splitlines()[0]))
    exports = list((tmp_path / "cache" / "exports").glob("yolo-*.onnx"))
    assert len(exports) == 1  # the second run reused the export
    assert want and not parity_problems("motorcycle", runs[0]["detections"], want)


@pytest.mark.ultralytics
@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="needs the ultralytics package (pip install 'trtdet[ultralytics]')")
def test_an_rtdetr_checkpoint_runs_as_ultralytics_predicts_it(tmp_path, monkeypatch):
    """RT-DETR's own family: `--model rtdetr --weights` exports it with Ultralytics and detects what `predict`
    on the .pt gives (its stretch-to-640 preprocessing, no NMS). A narrow rtdetr-l keeps the CPU export short."""
    import torch
    import ultralytics
    from ultralytics import RTDETR

    from tests.data.make_ultralytics_families import (
        NUM_CLASSES,
        RTDETR_SPREAD,
        spread_scores,
        tiny_rtdetr_yaml,
    )
    from tests.trtdet_yolo.test_ultralytics_families import parity_problems

    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    spec = tmp_path / "rtdetr-tiny.yaml"
    # JSON is YAML: Ultralytics reads it, and the tests need no yaml package of their own
    spec.write_text(json.dumps(tiny_rtdetr_yaml(Path(ultralytics.__file__).parent / "cfg" / "models", NUM_CLASSES)))
    model = RTDETR(str(spec))
    spread_scores(model.model, seed=1, **RTDETR_SPREAD)
    weights, image, want = _saved_and_predicted(model, RTDETR, tmp_path / "detr.pt")
    result = CliRunner().invoke(cli, ["run", "--model", "rtdetr", "--weights", str(weights), "--source", str(image),
                                      "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout.splitlines()[0])
    assert len(list((tmp_path / "cache" / "exports").glob("rtdetr-*.onnx"))) == 1
    assert want and not parity_problems("motorcycle", ours["detections"], want)


@pytest.mark.ultralytics
@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="needs the ultralytics package (pip install 'trtdet[ultralytics]')")
def test_a_checkpoint_of_the_other_family_names_the_right_model(tmp_path, monkeypatch):
    from ultralytics import RTDETR

    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "rtdetr.pt"
    RTDETR("rtdetr-l.yaml").save(str(weights))
    result = CliRunner().invoke(cli, ["run", "--model", "yolo", "--weights", str(weights), "--quiet"])
    assert result.exit_code == 1
    assert f"{weights}: is an Ultralytics rtdetr checkpoint: run it with --model rtdetr" in result.output
