"""Choosing AOTInductor's C++ compiler: the shared-library probe, its order and its remembered verdicts."""

from __future__ import annotations

import shutil
import stat

import pytest

from trtdet.engines.inductor import compiler
from trtdet.errors import ModelError

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ on PATH")


@pytest.fixture
def fresh_choice(monkeypatch, tmp_path):
    """A clean process-wide choice and an empty trtdet cache."""
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compiler, "_choice", None)
    yield tmp_path
    compiler._choice = None


def _static_gxx(folder) -> str:
    """g++ linking its C++ runtime statically into shared libraries (what broke loading on the H200)."""
    script = folder / "static-g++"
    script.write_text('#!/bin/sh\nexec g++ -static-libstdc++ "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_compiler_linking_libstdcxx_statically_is_passed_over_for_the_next(fresh_choice, monkeypatch):
    static = _static_gxx(fresh_choice)
    monkeypatch.setattr(compiler, "candidate_compilers", lambda: [static, "g++"])
    chosen, passed_over = compiler.choose_compiler()
    assert chosen == "g++"
    assert len(passed_over) == 1 and passed_over[0].startswith(static) and "crash when loaded" in passed_over[0]


def test_verdicts_are_remembered_so_a_later_build_probes_nothing(fresh_choice, monkeypatch):
    static = _static_gxx(fresh_choice)
    monkeypatch.setattr(compiler, "candidate_compilers", lambda: [static, "g++"])
    first = compiler.choose_compiler()
    assert (fresh_choice / "cache" / "cxx-probes.json").is_file()
    compiler._choice = None  # a new process

    def no_probe(name):
        raise AssertionError(f"probed {name} again")

    monkeypatch.setattr(compiler, "probe_compiler", no_probe)
    assert compiler.choose_compiler() == first


def test_no_usable_compiler_is_one_error_naming_each_and_is_asked_again_next_time(fresh_choice, monkeypatch):
    monkeypatch.setenv("TRTDET_CXX", "/bin/false")
    with pytest.raises(ModelError) as info:
        compiler.choose_compiler()
    message = str(info.value)
    assert "/bin/false: cannot compile a shared library" in message and "TRTDET_CXX" in message
    assert compiler._choice is None  # not cached in the process: installing g++ fixes the next build
