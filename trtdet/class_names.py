"""Class names stored in model files: a JSON list, or Ultralytics' ``{0: 'person', ...}`` literal."""

from __future__ import annotations

import ast
import json


def parse_class_names(value: str) -> tuple[str, ...] | None:
    """Class names from metadata: a JSON list, or Ultralytics' ``{0: 'person', ...}`` literal."""
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if isinstance(parsed, dict):
        try:
            return tuple(str(parsed[i]) for i in range(len(parsed)))
        except KeyError:
            return None
    if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
        return tuple(parsed)
    return None
