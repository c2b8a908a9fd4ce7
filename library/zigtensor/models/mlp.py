"""A multilayer perceptron over flattened images: (Linear, ReLU, Dropout) per hidden layer, then a linear
head.

>>> model = MLP(MLPConfig(in_features=784, hidden=(256, 256), num_classes=10))
>>> model(zt.randn(8, 1, 28, 28)).shape
(8, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import nn
from ..nn import functional as F


@dataclass
class MLPConfig:
    in_features: int = 784  # size of one flattened input (1 * 28 * 28)
    hidden: tuple[int, ...] = (256, 128)  # widths of the hidden layers, input side first
    num_classes: int = 10  # logits per example
    dropout: float = 0.0  # dropout probability after each hidden activation


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        widths = [config.in_features, *config.hidden]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths, widths[1:])])
        self.head = nn.Linear(widths[-1], config.num_classes)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)  # (N, C*H*W)
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.config.dropout, self.training)
        return self.head(x)  # (N, num_classes)
