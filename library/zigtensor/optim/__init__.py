"""zigtensor.optim: the Optimizer base and its families."""

from .adam import Adam, AdamW
from .optimizer import Optimizer

__all__ = ["Optimizer", "Adam", "AdamW"]
