"""Old names kept working after a rename: one warning naming the new name, the same behaviour."""

from __future__ import annotations

import warnings
from typing import TypeVar

from trtdet.errors import UsageError

T = TypeVar("T")


def renamed(new_value: T, old_value: T | None, *, old: str, new: str, new_given: bool = True,
            stacklevel: int = 3) -> T:
    """The value to use when ``old`` was renamed ``new``: the old one (with a ``DeprecationWarning``) if given.

    ``new_given`` says whether the caller also passed ``new`` itself (not just its default):
    both at once is a ``UsageError``, since they mean the same thing.
    """
    if old_value is None:
        return new_value
    if new_given:
        raise UsageError(f"give {new} or {old} (its old name), not both")
    warnings.warn(f"{old} is deprecated: it was renamed {new} (same meaning)", DeprecationWarning,
                  stacklevel=stacklevel)
    return old_value
