"""zigtensor.models: the networks `zt train` builds, one readable file each.

    mlp.MLP            images -> class logits, fully connected
    cnn.CNN            images -> class logits, conv blocks and a fully connected head
    gpt.GPT            token ids -> next-token logits, a GPT-2-shaped decoder-only transformer
    char_lstm.CharLSTM token ids -> next-token logits, stacked LSTMs

Each model takes its own config dataclass; zigtensor.train.models builds them from a recipe's [model].
"""

from .char_lstm import CharLSTM, CharLSTMConfig
from .cnn import CNN, CNNConfig
from .gpt import GPT, GPTConfig
from .mlp import MLP, MLPConfig

__all__ = ["MLP", "MLPConfig", "CNN", "CNNConfig", "GPT", "GPTConfig", "CharLSTM", "CharLSTMConfig"]
