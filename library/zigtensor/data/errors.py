"""The errors of zigtensor.data."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is not on this machine. The one-line message says how to install it, or which path
    (`data.path` in a recipe) to set."""
