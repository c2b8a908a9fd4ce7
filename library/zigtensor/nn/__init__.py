"""zigtensor.nn: Module and Parameter, containers, layers, init, and the functional API (nn.functional)."""

from . import functional, init
from .container import ModuleDict, ModuleList, Sequential
from .module import Module, Parameter

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict"]
