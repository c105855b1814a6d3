"""``trtdet.lazy``: a module stand-in imports its module at the first attribute read, once."""

from __future__ import annotations

import sys
import textwrap

import pytest

from trtdet.lazy import LazyModule, lazy_import


@pytest.fixture
def counting_module(tmp_path, monkeypatch):
    """A module on the path that counts, in a file, how often it is executed."""
    name = "trtdet_lazy_probe_module"
    counter = tmp_path / "count.txt"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        _count = Path({str(counter)!r})
        _count.write_text(str(int(_count.read_text()) + 1) if _count.exists() else "1")
        ANSWER = 42

        def double(x):
            return 2 * x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name, counter
    sys.modules.pop(name, None)


def test_nothing_is_imported_until_an_attribute_is_read(counting_module):
    name, counter = counting_module
    stand_in = lazy_import(name)
    assert isinstance(stand_in, LazyModule)
    assert name not in sys.modules and not counter.exists()
    assert "not imported yet" in repr(stand_in)
    assert stand_in.ANSWER == 42
    assert name in sys.modules and counter.read_text() == "1"
    assert stand_in.double(21) == 42 and stand_in.ANSWER == 42
    assert counter.read_text() == "1"  # imported once
    assert "(imported)" in repr(stand_in)


def test_attributes_follow_the_module_as_it_is_now(counting_module, monkeypatch):
    """A read goes to the module each time, so a monkeypatched attribute is what callers get."""
    name, _ = counting_module
    stand_in = lazy_import(name)
    assert stand_in.ANSWER == 42
    monkeypatch.setattr(sys.modules[name], "ANSWER", 7)
    assert stand_in.ANSWER == 7


def test_a_dotted_name_loads_the_submodule():
    stand_in = lazy_import("email.mime.text")
    from email.mime.text import MIMEText

    assert stand_in.MIMEText is MIMEText


def test_a_missing_module_fails_at_first_use_naming_it():
    stand_in = lazy_import("trtdet_no_such_module_anywhere")  # creating it is fine
    with pytest.raises(ModuleNotFoundError, match="trtdet_no_such_module_anywhere"):
        getattr(stand_in, "anything")  # noqa: B009 - the read is the point
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        getattr(lazy_import("json"), "missing")  # noqa: B009
