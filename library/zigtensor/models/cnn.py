"""A small convolutional classifier: blocks of (3x3 conv, ReLU, 2x2 max-pool), one hidden fully connected
layer, dropout, and a linear head.

>>> model = CNN(CNNConfig(channels=(32, 64), hidden=128))
>>> model(zt.randn(8, 1, 28, 28)).shape
(8, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import nn
from ..nn import functional as F


@dataclass
class CNNConfig:
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of one image
    channels: tuple[int, ...] = (32, 64)  # output channels of each conv block
    hidden: int = 128  # width of the fully connected layer
    num_classes: int = 10  # logits per example
    dropout: float = 0.0  # dropout probability before the head


class CNN(nn.Module):
    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        c, h, w = config.input_shape
        convs = []
        for out in config.channels:
            convs.append(nn.Conv2d(c, out, 3, padding=1))  # 3x3, same size
            c, h, w = out, h // 2, w // 2  # then a 2x2 max-pool halves the image
            if h == 0 or w == 0:
                raise ValueError(f"CNN: {len(config.channels)} blocks of 2x2 pooling shrink the "
                                 f"{config.input_shape[1]}x{config.input_shape[2]} input to nothing")
        self.convs = nn.ModuleList(convs)
        self.fc = nn.Linear(c * h * w, config.hidden)
        self.head = nn.Linear(config.hidden, config.num_classes)

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)  # (N, C_out, H/2, W/2)
        x = F.relu(self.fc(x.reshape(x.shape[0], -1)))  # (N, hidden)
        x = F.dropout(x, self.config.dropout, self.training)
        return self.head(x)  # (N, num_classes)
