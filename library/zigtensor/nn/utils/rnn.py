"""Batches of variable-length sequences (torch.nn.utils.rnn.pad_sequence)."""

from __future__ import annotations

from ...tensor import Tensor


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Sequences (L_i, *) padded to the longest into (max L, B, *) or, with batch_first, (B, max L, *); padding
    after each sequence (padding_side="left": before). A graph op: gradients reach each sequence."""
    from ...ops.padding import pad
    from ...ops.shape import stack

    sequences = list(sequences)
    if not sequences or not all(isinstance(s, Tensor) and s.ndim >= 1 for s in sequences):
        raise TypeError("pad_sequence: expected a non-empty list of Tensors with at least 1 dim")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    tail = sequences[0].shape[1:]
    for i, s in enumerate(sequences):
        if s.shape[1:] != tail:
            raise RuntimeError(f"pad_sequence: sequence {i} has trailing shape {s.shape[1:]}, the first {tail}")
    longest = max(s.shape[0] for s in sequences)
    padded = []
    for s in sequences:
        extra = longest - s.shape[0]
        pads = [0, 0] * len(tail) + ([0, extra] if padding_side == "right" else [extra, 0])
        padded.append(pad(s, tuple(pads), value=padding_value) if extra else s)
    return stack(padded, 0 if batch_first else 1)
