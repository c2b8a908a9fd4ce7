"""The tiny recipes and synthetic datasets that the training tests run (test_trainer, test_train_cli, test_amp):
an MLP on MNIST-format images made here and a character GPT on a repeated sentence, each a few seconds."""

from __future__ import annotations

import numpy as np

from zigtensor.data import write_idx
from zigtensor.train import load_recipe
from zigtensor.train.recipe import recipe_to_toml

IMAGE_RECIPE = """\
# A tiny MLP on synthetic 28x28 images
[model]
name = "mlp"
hidden = [32]
dropout = 0.2
[data]
name = "mnist"
path = "{path}"
val_fraction = 0.25
[optim]
name = "adamw"
lr = 3e-3
[schedule]
name = "warmup_cosine"
warmup_steps = 5
[train]
steps = 60
batch_size = 32
log_every = 10
eval_every = 20
checkpoint_every = 20
keep_checkpoints = 2
[eval]
batches = 4
"""

TEXT_RECIPE = """\
# A tiny GPT on a repeated sentence
[model]
name = "gpt"
n_layer = 1
n_head = 2
n_embd = 32
dropout = 0.1
[data]
name = "text"
path = "{path}"
block_size = 16
[optim]
name = "adamw"
lr = 1e-2
[train]
steps = 100
batch_size = 16
log_every = 10
eval_every = 25
checkpoint_every = 50
[eval]
batches = 2
[sample]
prompt = "hello"
tokens = 40
temperature = 0.0
"""


def write_image_dataset(folder, n_train=512, n_test=128, seed=0):
    """MNIST-format gz IDX files: each class is a random prototype of bright pixels, of which an image shows
    40% among 15% bright clutter and faint noise: easy for an MLP, but not at once."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 28, 28)) < 0.08
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        shown = prototypes[y] & (rng.random((n, 28, 28)) < 0.4)
        clutter = rng.random((n, 28, 28)) < 0.15
        x = np.where(shown | clutter, 230, 0) + rng.integers(0, 25, (n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x.astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    return folder


def write_recipe(dest, template: str, data_path, *overrides: str):
    """template with its data path (None: template is a recipe's text already), and `key.path=value` overrides
    applied (as `zt train --set` does), as a resolved recipe file at dest; returns dest."""
    dest.write_text(template if data_path is None else template.format(path=data_path))
    if overrides:
        dest.write_text(recipe_to_toml(load_recipe(dest, overrides)))
    return dest
