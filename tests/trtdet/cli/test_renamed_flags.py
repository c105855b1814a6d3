"""``--max-batch`` was renamed ``--batch`` (build, serve): the old flag still works, with one ``warning:`` line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli
from trtdet.contracts.engine import BackendDefaults


class _Artifact:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return "recorded"


class _RecordingBackend(BackendDefaults):
    """Stands in for the TensorRT builder: records the options ``trtdet build`` passes it."""

    artifact_suffix = ".engine"

    def __init__(self) -> None:
        self.options = None

    def build(self, source, spec, options, request=None):
        self.options = options
        return _Artifact(request.output)


@pytest.fixture
def builder(monkeypatch):
    backend = _RecordingBackend()
    monkeypatch.setattr("trtdet.cli.build._builder", lambda name: backend)
    monkeypatch.setattr("trtdet.model_file.check_onnx_fits", lambda spec, path: None)
    return backend


@pytest.mark.parametrize("flag", ["--batch", "--max-batch"])
def test_build_takes_the_batch_under_both_names(builder, tmp_path, flag):
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.onnx"), "-m", "yolo", "--device", "cpu",
                                      flag, "6", "-o", str(tmp_path / "m.engine")])
    assert result.exit_code == 0, result.output
    assert builder.options.batch == 6
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if flag == "--max-batch":
        assert warnings == ["warning: --max-batch is deprecated: use --batch (same meaning)"]
    else:
        assert warnings == []


def test_build_refuses_both_names_at_once(builder, tmp_path):
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.onnx"), "-m", "yolo", "--batch", "2",
                                      "--max-batch", "4"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: give --batch or --max-batch (its old name), not both"
    assert builder.options is None


def test_the_old_name_is_hidden_from_help():
    for command in ("build", "serve"):
        shown = CliRunner().invoke(cli, [command, "--help"]).output
        assert "--batch" in shown and "--max-batch" not in shown


@pytest.mark.parametrize(("args", "expected", "warned"), [([], 32, False), (["--batch", "5"], 5, False),
                                                         (["--max-batch", "7"], 7, True)])
def test_serve_takes_the_batch_under_both_names(monkeypatch, args, expected, warned):
    seen = {}

    def run(self, model, options, host, port, replicas, **app):
        seen.update(app)

    monkeypatch.setattr("trtdet.cli.serve._Service.run", run)
    result = CliRunner().invoke(cli, ["serve", "-m", "yolo", *args])
    assert result.exit_code == 0, result.output
    assert seen["batch"] == expected
    assert ("warning: --max-batch is deprecated: use --batch (same meaning)" in result.stderr) == warned
