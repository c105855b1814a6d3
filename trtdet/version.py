"""trtdet's version, in a module of its own so that any layer can read it without importing the package's face."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trtdet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"
