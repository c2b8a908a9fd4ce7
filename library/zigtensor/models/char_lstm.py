"""A character-level LSTM language model: token embedding, stacked LSTM layers, a linear head.

>>> model = CharLSTM(CharLSTMConfig(vocab_size=96, embed=64, hidden=128, num_layers=2))
>>> model(zt.randint(0, 96, (4, 32))).shape
(4, 32, 96)
>>> logits, state = model.forward_with_state(zt.tensor([[5]]))     # one step, the state carried on
>>> logits, state = model.forward_with_state(zt.tensor([[7]]), state)
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import nn


@dataclass
class CharLSTMConfig:
    vocab_size: int = 96  # tokens in the vocabulary
    embed: int = 64  # token embedding width
    hidden: int = 256  # LSTM hidden size
    num_layers: int = 2  # stacked LSTM layers
    dropout: float = 0.0  # dropout between stacked layers (none with a single layer)


class CharLSTM(nn.Module):
    def __init__(self, config: CharLSTMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.lstm = nn.LSTM(config.embed, config.hidden, num_layers=config.num_layers, batch_first=True,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward_with_state(self, idx, state=None):
        """Token ids (B, T) and the state (h, c) after the tokens before them (None: the start) ->
        (logits (B, T, vocab_size), the state after idx), each of h and c (num_layers, B, hidden)."""
        out, state = self.lstm(self.embedding(idx), state)  # (B, T, hidden)
        return self.head(out), state  # (B, T, vocab_size)

    def forward(self, idx):
        """Token ids (B, T) int64 -> logits (B, T, vocab_size), from the zero state."""
        return self.forward_with_state(idx)[0]
