"""Batches from in-memory NumPy arrays, or from any map-style dataset (`__len__` and `__getitem__`, as PyTorch's
Dataset), as Tensors, with seeded shuffling and an exactly resumable position.

The loaders draw their randomness from their own NumPy generators, seeded from (seed, epoch) or (seed,
batch number), never from the framework RNG (zt.manual_seed): the data order does not change when the
model draws more or fewer random numbers, and a loader restored with load_state_dict() yields exactly the
batches that the uninterrupted one would have.

>>> loader = DataLoader((images, labels), batch_size=64, shuffle=True, seed=0)
>>> for x, y in loader:                    # one epoch
...     ...
>>> state = loader.state_dict()            # {"epoch": 1, "position": 0}
>>> batches = loader.batches()             # endless, across epochs, for step-based training
>>> loader = DataLoader(my_dataset, batch_size=32, shuffle=True)   # samples collated by default_collate
"""

from __future__ import annotations

import numbers

import numpy as np

from ..creation import from_numpy, tensor
from ..device import device as as_device
from .text import windows


def _check_int(who: str, name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{who}: {name} must be an int >= {low}, got {value!r}")


def _to_tensor(arr: np.ndarray, dev):
    arr = np.ascontiguousarray(arr)
    return from_numpy(arr) if dev.type == "cpu" else tensor(arr, device=dev)


def _check_state(who: str, state, keys: tuple) -> None:
    if not isinstance(state, dict) or set(state) != set(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{who}.load_state_dict: expected a dict with keys {list(keys)}, got {got}")
    for k in keys:
        _check_int(f"{who}.load_state_dict", k, state[k], 0)


def default_collate(samples: list, device=None):
    """A batch from a list of samples, as PyTorch's default_collate: Tensors are stacked, NumPy arrays and
    numbers stacked into Tensors (Python floats as float64, ints as int64, as PyTorch), dicts and tuples/lists
    collated field by field, strings kept as a list."""
    from ..ops.shape import stack
    from ..tensor import Tensor

    dev = as_device(device)
    first = samples[0]
    if isinstance(first, Tensor):
        out = stack(list(samples))
        return out if out.device is dev else out.to(dev)
    if isinstance(first, np.ndarray):
        return _to_tensor(np.stack(samples), dev)
    if isinstance(first, (bool, np.bool_, numbers.Number)):
        kind = np.float64 if isinstance(first, float) else None
        return _to_tensor(np.asarray(samples, dtype=kind), dev)
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples], dev) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError(f"default_collate: the samples of a batch have different lengths "
                             f"{sorted({len(s) for s in samples})}")
        fields = [default_collate(list(f), dev) for f in zip(*samples)]
        return fields if isinstance(first, list) else tuple(fields)
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; give the DataLoader "
                    "a collate_fn")


class DataLoader:
    """Mini-batches of aligned arrays, or of a map-style dataset's samples, as Tensors on device.

    Args:
        dataset: a tuple of NumPy arrays with the same first dimension (a batch is a tuple of Tensors), one
            array (a batch is one Tensor), or any object with __len__ and __getitem__ (a batch is
            collate_fn(list of samples)).
        batch_size (int): examples per batch. Default 1.
        shuffle (bool): a new order each epoch, a permutation drawn from np.random.default_rng((seed, epoch)).
            Default False.
        drop_last (bool): skip the last batch of an epoch when it is smaller than batch_size. Default False.
        seed (int): the shuffling seed. Default 0.
        device: where the batches are put. Default the CPU.
        collate_fn: list of samples -> batch, for a map-style dataset. Default default_collate (on device).
        num_workers (int): 0 only: samples are loaded in the calling process.

    The state is (epoch, position): position is the index, in the epoch's order, of the next example.
    Iterating yields the rest of the current epoch; the state moves past each batch as it is yielded, and to
    (epoch + 1, 0) with the last one.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False, seed: int = 0,
                 device=None, collate_fn=None, num_workers: int = 0):
        if num_workers != 0:
            raise ValueError(f"DataLoader: num_workers must be 0 (samples are loaded in this process), got "
                             f"{num_workers!r}")
        arrays = dataset
        self._single = isinstance(arrays, np.ndarray)
        self.dataset = None if self._single or isinstance(arrays, tuple) else dataset
        if self.dataset is not None:
            if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
                raise TypeError("DataLoader: expected a NumPy array, a tuple of NumPy arrays or a dataset with "
                                f"__len__ and __getitem__, got {type(dataset).__name__}")
            arrays = (np.arange(len(dataset)),)  # the loader orders indices; samples are fetched per batch
        if collate_fn is not None and self.dataset is None:
            raise ValueError("DataLoader: collate_fn is for datasets; arrays are batched by slicing")
        self.collate_fn = collate_fn
        arrays = (arrays,) if self._single else tuple(arrays)
        if not arrays or not all(isinstance(a, np.ndarray) and a.ndim >= 1 for a in arrays):
            raise TypeError("DataLoader: expected a NumPy array or a non-empty tuple of NumPy arrays "
                            f"(ndim >= 1), got {[type(a).__name__ for a in arrays]}")
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: the arrays must have the same first dimension, got lengths "
                             f"{lengths}")
        _check_int("DataLoader", "batch_size", batch_size, 1)
        _check_int("DataLoader", "seed", seed, 0)
        self.arrays, self.n = arrays, lengths[0]
        self.batch_size, self.seed = batch_size, seed
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.device = as_device(device)
        # an epoch ends at this position: drop_last leaves out the incomplete tail
        self._stop = self.n - self.n % batch_size if drop_last else self.n
        if self._stop == 0:
            raise ValueError(f"DataLoader: {self.n} examples give no batch of {batch_size}"
                             + (" with drop_last" if drop_last else ""))
        self.epoch, self.position = 0, 0
        self._order_cache = (None, None)

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self._stop // self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._order_cache[0] != epoch:
            order = (np.random.default_rng((self.seed, epoch)).permutation(self.n) if self.shuffle
                     else np.arange(self.n))
            self._order_cache = (epoch, order)
        return self._order_cache[1]

    def __iter__(self):
        order, start = self._order(self.epoch), self.position
        while start < self._stop:
            idx = order[start:start + self.batch_size]
            start += len(idx)
            if start >= self._stop:
                self.epoch, self.position = self.epoch + 1, 0
            else:
                self.position = start
            if self.dataset is not None:
                samples = [self.dataset[int(i)] for i in idx]
                yield (self.collate_fn(samples) if self.collate_fn is not None
                       else default_collate(samples, self.device))
                continue
            batch = tuple(_to_tensor(a[idx], self.device) for a in self.arrays)
            yield batch[0] if self._single else batch

    def batches(self):
        """Batches without end, epoch after epoch (for a loop counted in steps)."""
        while True:
            yield from self

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        _check_state("DataLoader", state, ("epoch", "position"))
        if state["position"] >= self._stop:
            raise ValueError(f"DataLoader.load_state_dict: position {state['position']} is past the end of "
                             f"an epoch ({self._stop} examples with batch_size {self.batch_size}"
                             + (", drop_last)" if self.drop_last else ")"))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __repr__(self) -> str:
        return (f"DataLoader(n={self.n}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed}, device='{self.device}')")


class RandomWindowLoader:
    """Endless batches (x, y) of token windows for language modelling, int64 Tensors (batch_size, block_size)
    on device: x = tokens[i:i+block_size], y = tokens[i+1:i+block_size+1] at random starts i.

    Batch number k draws its starts from np.random.default_rng((seed, k)), so the state is just the number
    of batches drawn ({"position": k}) and a restored loader continues exactly.

    >>> loader = RandomWindowLoader(train_tokens, block_size=128, batch_size=32, seed=0)
    >>> x, y = next(iter(loader))
    """

    def __init__(self, tokens, block_size: int, batch_size: int, seed: int = 0, device=None):
        self.tokens = np.asarray(tokens)
        if self.tokens.ndim != 1 or (self.tokens.size and self.tokens.dtype.kind not in "iu"):
            raise TypeError(f"RandomWindowLoader: expected a 1-d array of integer token ids, got "
                            f"{self.tokens.dtype} of shape {self.tokens.shape}")
        _check_int("RandomWindowLoader", "block_size", block_size, 1)
        _check_int("RandomWindowLoader", "batch_size", batch_size, 1)
        _check_int("RandomWindowLoader", "seed", seed, 0)
        if len(self.tokens) < block_size + 1:
            raise ValueError(f"RandomWindowLoader: block_size {block_size} needs at least {block_size + 1} "
                             f"tokens, got {len(self.tokens)}")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.device = as_device(device)
        self.position = 0

    def next_batch(self):
        rng = np.random.default_rng((self.seed, self.position))
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        x, y = windows(self.tokens, starts, self.block_size)
        self.position += 1
        return _to_tensor(x.astype(np.int64), self.device), _to_tensor(y.astype(np.int64), self.device)

    def batches(self):
        while True:
            yield self.next_batch()

    __iter__ = batches

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        _check_state("RandomWindowLoader", state, ("position",))
        self.position = int(state["position"])

    def __repr__(self) -> str:
        return (f"RandomWindowLoader(tokens={len(self.tokens)}, block_size={self.block_size}, "
                f"batch_size={self.batch_size}, seed={self.seed}, device='{self.device}')")
