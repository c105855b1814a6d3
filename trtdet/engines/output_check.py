"""Moved to ``trtdet.contracts.output_check`` (contracts apart from the implementations); this old
import path keeps working for plugins written against it."""

from trtdet.contracts.output_check import *  # noqa: F403
