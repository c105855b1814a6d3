"""trtdet-person: an example third-party trtdet plugin (a person-only detector)."""

__version__ = "0.1.0"
