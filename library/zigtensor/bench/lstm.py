"""One training step of a character-level LSTM against PyTorch eager, side by side in one process.

Embedding(96, 128) -> LSTM(128, 128, num_layers=2) -> Linear(128, 96) -> cross-entropy, Adam, batch 32,
sequence 64, float32. Both models start from the same weights and see the same batch.
"""

from __future__ import annotations

import importlib

import numpy as np

import zigtensor as zt
import zigtensor.nn.functional as F

from .timing import Result, median_interleaved

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, SEQ = 96, 128, 128, 2, 32, 64


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


class CharLSTM(zt.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = zt.nn.Embedding(VOCAB, EMBED)
        self.lstm = zt.nn.LSTM(EMBED, HIDDEN, num_layers=LAYERS)
        self.head = zt.nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):  # (L, N) -> (L * N, VOCAB)
        out, _ = self.lstm(self.embedding(tokens))
        return self.head(out.reshape(-1, HIDDEN))


def _torch_twin(torch, model: CharLSTM):
    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, EMBED)
            self.lstm = torch.nn.LSTM(EMBED, HIDDEN, num_layers=LAYERS)
            self.head = torch.nn.Linear(HIDDEN, VOCAB)

        def forward(self, tokens):
            out, _ = self.lstm(self.embedding(tokens))
            return self.head(out.reshape(-1, HIDDEN))

    twin = Twin()
    twin.load_state_dict({k: torch.tensor(v.numpy().copy()) for k, v in model.state_dict().items()})
    return twin


def lstm_step(repeats: int = 20) -> Result:
    """Forward, cross-entropy, backward and an Adam update, per step."""
    zt.manual_seed(0)
    model = CharLSTM()
    opt = zt.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (SEQ, BATCH))
    y = rng.integers(0, VOCAB, (SEQ, BATCH))
    zx, zy = zt.tensor(x), zt.tensor(y.reshape(-1))

    def zt_step():
        loss = F.cross_entropy(model(zx), zy)
        opt.zero_grad()
        loss.backward()
        opt.step()

    name = f"LSTM {EMBED}-{HIDDEN}x{LAYERS} char model Adam step, batch {BATCH}, seq {SEQ}"
    torch = _torch()
    if torch is None:
        (zt_s,) = median_interleaved([zt_step], repeats)
        return Result(name, zt_s, None, "torch eager")
    twin = _torch_twin(torch, model)
    topt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(y.reshape(-1))

    def torch_step():
        loss = torch.nn.functional.cross_entropy(twin(tx), ty)
        topt.zero_grad()
        loss.backward()
        topt.step()

    zt_s, t_s = median_interleaved([zt_step, torch_step], repeats)
    return Result(name, zt_s, t_s, "torch eager")


def run(quick: bool = False) -> list[Result]:
    return [lstm_step(7 if quick else 20)]


if __name__ == "__main__":
    r = lstm_step()
    print(f"{r.name}: zigtensor {r.zt_s * 1e3:.1f} ms, torch {r.ref_s * 1e3:.1f} ms, "
          f"zigtensor/torch {r.zt_s / r.ref_s:.2f}x")
