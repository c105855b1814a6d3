"""Exceptions that carry one clear, user-facing line each."""

from __future__ import annotations


class TrtdetError(Exception):
    """Base class: its message is a single line fit to show a user as-is."""


class UsageError(TrtdetError):
    """The command or call itself is wrong (unknown model, bad option): exit code 1."""


class ModelError(TrtdetError):
    """A model file is missing, corrupt or does not fit the chosen model plugin: exit code 1."""


class InputError(TrtdetError, ValueError):
    """One input (image, frame, video) could not be used; the other inputs go on: exit code 2.

    Also a ``ValueError``: an array that is no image is a bad value, caught either way.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class ClosedError(TrtdetError, RuntimeError):
    """The detector (or its batching worker) was closed: ``detector is closed``."""


class TrtdetWarning(UserWarning):
    """A one-line warning of trtdet's own: the CLI prints it as ``warning: <message>`` (no file:line)."""


class DeprecatedFlagWarning(TrtdetWarning):
    """A command-line flag given by its old name (``--max-batch``, now ``--batch``): it still works."""


class PluginLoadWarning(TrtdetWarning):
    """A plugin package could not be loaded and is left out (``trtdet plugins`` lists why)."""


class CorruptImageWarning(TrtdetWarning):
    """An image file with damaged data that still decoded (libjpeg's "Corrupt JPEG data", ...).

    The image is used, but parts of it may be gray. ``trtdet run`` and ``trtdet batch`` put the
    line in the input's record (``"warning"``); Python API calls on a path warn with this category.
    """


class ModelOutputError(ModelError):
    """The engine's actual outputs contradict the shapes the model file declares (found on the first
    batch). Fatal for the whole run, not one input: ``detector.stream`` and ``trtdet run`` raise it."""
