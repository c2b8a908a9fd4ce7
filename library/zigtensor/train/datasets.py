"""A recipe's [data] section -> the splits, the training loader and the evaluation batches of a run.

Image datasets (fashion-mnist, mnist): the IDX training file is cut into train (the first part, or its first
data.train_size images) and val (the last data.val_fraction); the IDX test file is the test split. Pixels
become float32 (N, 1, 28, 28) normalized with the mean and std of the train split, batch by batch.

Text datasets (shakespeare, text): the corpus is tokenized (data.tokenizer) and cut into train and val
token streams; training draws random windows of data.block_size tokens.

Evaluation batches come in a fixed order, the same at every evaluation, and never touch the framework RNG
or the training loader, so evaluating does not change the run.

>>> data = build_data(recipe)
>>> data.info                              # DataInfo(kind='image', input_shape=(1, 28, 28), ...)
>>> x, y = next(data.train.batches()); x = data.inputs(x)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import DataLoader, RandomWindowLoader, load_corpus, load_image_dataset, make_tokenizer
from ..data import train_val_split as split_tokens
from ..dtypes import float32
from .models import DataInfo
from .recipe import ImageDataConfig, Recipe, RecipeError

IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of the MNIST-format datasets
IMAGE_CLASSES = 10


@dataclass
class RunData:
    """The data of a run: what the model needs to know, the training loader, the evaluation splits."""

    info: DataInfo
    train: DataLoader | RandomWindowLoader  # endless batches through .batches(); state_dict() resumes it
    splits: dict = field(default_factory=dict)  # split name -> arrays: (images, labels) or a token stream
    batch_size: int = 64
    tokenizer: object | None = None  # text: the tokenizer (to_dict() goes into the checkpoint)
    normalize: dict | None = None  # images: {"mean", "std"} of the train split's pixels in [0, 1]
    seed: int = 0

    @property
    def unit(self) -> str:
        """What the throughput counts: samples (images) or tokens."""
        return "samples" if self.info.kind == "image" else "tokens"

    def inputs(self, x):
        """A batch's inputs as the model takes them: uint8 images -> normalized float32; tokens as is."""
        if self.normalize is None:
            return x
        scale = 1.0 / (255.0 * self.normalize["std"])
        return x.to(float32) * scale - self.normalize["mean"] / self.normalize["std"]

    def eval_batches(self, split: str, limit: int | None = None, batch_size: int | None = None):
        """(x, y) batches of a split, the same ones every time; at most limit batches (None: the whole
        split of an image dataset; text windows need a limit)."""
        batch_size = batch_size or self.batch_size
        data = self.splits[split]
        if self.info.kind == "image":
            loader = DataLoader(data, batch_size=batch_size, device=self.train.device)
            for i, batch in enumerate(loader):
                if limit is not None and i >= limit:
                    return
                yield batch
        else:
            if limit is None:
                raise ValueError("eval_batches: text splits need a limit (random windows never run out)")
            loader = RandomWindowLoader(data, self.train.block_size, batch_size, seed=self.seed,
                                        device=self.train.device)
            for _ in range(limit):
                yield loader.next_batch()


def _pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels, scaled to [0, 1], from their histogram (exact, no float copy)."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    n = counts.sum()
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / n)
    return mean, max(var, 1e-12) ** 0.5


def describe_data(recipe: Recipe) -> DataInfo:
    """The DataInfo of a recipe's data, loading only what it needs (nothing for images, the corpus for a
    char tokenizer), for a dry run."""
    d = recipe.data
    if isinstance(d, ImageDataConfig):
        return DataInfo(kind="image", input_shape=IMAGE_SHAPE, num_classes=IMAGE_CLASSES)
    vocab = 256 if d.tokenizer == "bytes" else make_tokenizer("char", load_corpus(d.name, d.path)).vocab_size
    return DataInfo(kind="text", input_shape=(d.block_size,), vocab_size=vocab, block_size=d.block_size)


def _build_images(recipe: Recipe) -> RunData:
    d, t = recipe.data, recipe.train
    images, labels = load_image_dataset(d.name, d.path, "train")
    test_images, test_labels = load_image_dataset(d.name, d.path, "test")
    for what, x, y in (("train", images, labels), ("test", test_images, test_labels)):
        if x.shape[1:] != IMAGE_SHAPE[1:]:
            raise ValueError(f"{d.name} {what} images: expected 28x28, got shape {x.shape}")
        if y.size and (y.min() < 0 or y.max() >= IMAGE_CLASSES):
            raise ValueError(f"{d.name} {what} labels: expected classes 0..{IMAGE_CLASSES - 1}, got "
                             f"{int(y.min())}..{int(y.max())}")
    n_val = int(len(images) * d.val_fraction)
    n_train = len(images) - n_val
    if d.train_size is not None:
        if d.train_size > n_train:
            raise RecipeError(f"data.train_size: expected at most {n_train} (the {d.name} training images "
                              f"left after the val split), got {d.train_size}")
        n_train = d.train_size
    if d.val_fraction > 0 and n_val == 0:
        raise RecipeError(f"data.val_fraction: {d.val_fraction} of {len(images)} images leaves no val split; "
                          "expected a larger fraction")
    if n_train == 0:
        raise RecipeError(f"data.val_fraction: {d.val_fraction} leaves no training images of {len(images)}")
    shape = (-1, *IMAGE_SHAPE)
    train_x, train_y = images[:n_train].reshape(shape), labels[:n_train]
    splits = {}
    if n_val:
        splits["val"] = (images[len(images) - n_val:].reshape(shape), labels[len(images) - n_val:])
    splits["test"] = (test_images.reshape(shape), test_labels)
    mean, std = _pixel_stats(train_x)
    # NOTE: every step sees a full batch, unless the whole train split is smaller than one
    loader = DataLoader((train_x, train_y), batch_size=t.batch_size, shuffle=True,
                        drop_last=n_train >= t.batch_size, seed=t.seed, device=t.device)
    info = DataInfo(kind="image", input_shape=IMAGE_SHAPE, num_classes=IMAGE_CLASSES)
    return RunData(info=info, train=loader, splits=splits, batch_size=t.batch_size,
                   normalize={"mean": mean, "std": std}, seed=t.seed)


def _build_text(recipe: Recipe) -> RunData:
    d, t = recipe.data, recipe.train
    text = load_corpus(d.name, d.path)
    tokenizer = make_tokenizer(d.tokenizer, text)
    tokens = tokenizer.encode(text)
    train, val = split_tokens(tokens, d.val_fraction)
    for name, part in (("train", train), ("val", val)):
        if (name == "train" or d.val_fraction > 0) and len(part) < d.block_size + 1:
            raise RecipeError(f"data.block_size: the {name} split has {len(part)} tokens, fewer than "
                              f"block_size + 1 ({d.block_size + 1}); use a smaller data.block_size or more "
                              "text")
    loader = RandomWindowLoader(train, d.block_size, t.batch_size, seed=t.seed, device=t.device)
    info = DataInfo(kind="text", input_shape=(d.block_size,), vocab_size=tokenizer.vocab_size,
                    block_size=d.block_size)
    splits = {"val": val} if len(val) else {}
    return RunData(info=info, train=loader, splits=splits, batch_size=t.batch_size, tokenizer=tokenizer,
                   seed=t.seed)


def build_data(recipe: Recipe) -> RunData:
    """The splits and loaders of a recipe's [data] section (DatasetNotFoundError when it is missing)."""
    return _build_images(recipe) if isinstance(recipe.data, ImageDataConfig) else _build_text(recipe)
