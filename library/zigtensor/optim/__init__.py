"""zigtensor.optim: the Optimizer base, its families, and learning-rate schedules (optim.lr_scheduler)."""

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adam_variants import Adadelta, Adamax, NAdam, RAdam
from .lion import Lion
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Lion", "Adamax", "NAdam", "RAdam", "Adadelta",
           "lr_scheduler"]
