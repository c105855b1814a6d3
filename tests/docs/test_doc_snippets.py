"""Every ``python`` block of docs/hooks.md and docs/writing-plugins.md runs as written.

Each block runs alone in a fresh namespace, so it must import what it uses; a block that
raises fails its test with the document and line named.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _snippets() -> list[tuple[str, int, str]]:
    found = []
    for name in ("hooks.md", "writing-plugins.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((name, line, match.group(1)))
    return found


SNIPPETS = _snippets()


def test_both_documents_have_snippets() -> None:
    by_document = {name for name, _, _ in SNIPPETS}
    assert by_document == {"hooks.md", "writing-plugins.md"} and len(SNIPPETS) >= 15


@pytest.mark.parametrize(("document", "line", "code"), SNIPPETS, ids=[f"{n}:{line}" for n, line, _ in SNIPPETS])
def test_snippet_runs_as_written(document: str, line: int, code: str) -> None:
    module = types.ModuleType(f"doc_snippet_{document.split('.')[0].replace('-', '_')}_{line}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    compiled = compile(code, f"{document}:{line}", "exec")
    try:
        exec(compiled, module.__dict__)  # noqa: S102 - running the documentation's own examples is the point
    finally:
        del sys.modules[module.__name__]
