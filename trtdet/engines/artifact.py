"""Moved to ``trtdet.contracts.artifact`` (the artifact file format is part of the contracts); this
old import path keeps working for plugins written against it."""

from trtdet.contracts.artifact import *  # noqa: F403
