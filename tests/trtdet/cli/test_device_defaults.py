"""``trtdet build`` and ``trtdet run`` default to the same device, ``auto``: the GPU when one is visible
(and a GPU runtime is installed), else the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trtdet import devices
from trtdet.cli.main import cli
from trtdet.contracts.engine import BackendDefaults
from trtdet.options import DetectorOptions, option_defaults


@pytest.fixture
def gpus(monkeypatch):
    """Set how many GPUs the driver shows (and that a GPU runtime is installed); ``auto`` is recomputed."""

    def set_count(count: int, runtime: bool = True) -> None:
        monkeypatch.setattr(devices, "_driver_gpus", lambda: count)
        monkeypatch.setattr(devices, "_gpu_runtime_installed", lambda: runtime)
        devices.auto_device.cache_clear()

    yield set_count
    devices.auto_device.cache_clear()


def _default(command: str, name: str):
    params = {p.name: p for p in cli.get_command(None, command).params}  # type: ignore[arg-type]
    return params[name].default


def test_build_and_run_have_one_default_device():
    assert _default("build", "device") == _default("run", "device") == option_defaults()["device"] == "auto"


@pytest.mark.parametrize(("count", "runtime", "expected"), [(0, True, "cpu"), (2, True, "cuda"), (1, False, "cpu")])
def test_auto_is_the_gpu_when_one_is_usable(gpus, count, runtime, expected):
    gpus(count, runtime)
    assert devices.resolve_device("auto") == devices.resolve_device(" AUTO ") == expected
    assert DetectorOptions().device == DetectorOptions(device="auto").device == expected
    assert DetectorOptions(device="cuda:1").device == "cuda:1"  # a named device is taken as it is


class _Recording(BackendDefaults):
    name = "recording"
    artifact_suffix = ".bin"

    def __init__(self, device_kinds: tuple[str, ...]) -> None:
        self.device_kinds = device_kinds
        self.options = None

    def build(self, source, spec, options, request=None):
        self.options = options

        class Built:
            path = request.output

            @staticmethod
            def describe() -> str:
                return "recorded"

        return Built()


@pytest.mark.parametrize(
    ("count", "kinds", "expected", "said"),
    [
        (0, ("cpu", "cuda"), "cpu", True),  # inductor-like, no GPU: a CPU package, said in one line
        (1, ("cpu", "cuda"), "cuda", False),
        (0, ("cuda",), "cuda", False),  # TensorRT-like: always for the GPU (TensorRT-RTX builds without one)
    ],
)
def test_build_resolves_auto_as_run_does(monkeypatch, gpus, tmp_path, count, kinds, expected, said):
    gpus(count)
    backend = _Recording(kinds)
    monkeypatch.setattr("trtdet.cli.build._builder", lambda name: backend)
    monkeypatch.setattr("trtdet.model_file.check_onnx_fits", lambda spec, path: None)
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.onnx"), "-m", "yolo", "-o", str(tmp_path / "m.bin")])
    assert result.exit_code == 0, result.output
    assert backend.options.device == expected
    line = "device auto: no CUDA GPU is visible, so this builds for the cpu (--device cuda builds for a GPU)"
    assert result.stderr.splitlines() == ([line] if said else [])
    if "cpu" in kinds:
        assert backend.options.device == DetectorOptions().device  # what `trtdet run` would run on


def test_a_named_device_is_not_resolved(monkeypatch, gpus, tmp_path):
    gpus(0)
    backend = _Recording(("cpu", "cuda"))
    monkeypatch.setattr("trtdet.cli.build._builder", lambda name: backend)
    monkeypatch.setattr("trtdet.model_file.check_onnx_fits", lambda spec, path: None)
    result = CliRunner().invoke(cli, ["build", str(Path(tmp_path) / "m.onnx"), "-m", "yolo", "--device", "CUDA:1"])
    assert result.exit_code == 0, result.output
    assert backend.options.device == "cuda:1" and result.stderr == ""


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["cuda: Optional[str] = '12.8'", "hip: Optional[str] = None"], True),  # a CUDA wheel
        (["cuda: Optional[str] = None", "hip: Optional[str] = '6.2'"], True),  # ROCm
        (["cuda: Optional[str] = None", "hip: Optional[str] = None"], False),  # the CPU wheel
    ],
)
def test_a_cpu_build_of_torch_is_no_gpu_runtime(tmp_path, lines, expected):
    """Read from torch's version.py as the wheels write it, without importing torch."""
    from types import SimpleNamespace

    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "version.py").write_text("from typing import Optional\n__version__ = '2.13.0'\n" + "\n".join(lines) + "\n")
    assert devices._torch_for_gpus(SimpleNamespace(origin=str(package / "__init__.py"))) is expected
