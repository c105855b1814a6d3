"""Moved to ``trtdet.contracts.engine`` (contracts apart from the implementations); this old
import path keeps working for plugins written against it."""

from trtdet.contracts.engine import *  # noqa: F403
