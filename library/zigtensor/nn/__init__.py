"""zigtensor.nn: the functional API (zigtensor.nn.functional, imported as F); layers come with the nn issue."""

from . import functional

__all__ = ["functional"]
