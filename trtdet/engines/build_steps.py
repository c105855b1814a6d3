"""Moved to ``trtdet.contracts.build_steps`` (contracts apart from the implementations); this old
import path keeps working for plugins written against it."""

from trtdet.contracts.build_steps import *  # noqa: F403
