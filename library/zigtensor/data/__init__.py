"""zigtensor.data: datasets (IDX images, text corpora, tokenizers) and loaders with a resumable position.

    images, labels = zt.data.load_image_dataset("fashion-mnist", split="train")
    loader = zt.data.DataLoader((images, labels), batch_size=64, shuffle=True, seed=0)

    text = zt.data.load_corpus("shakespeare")
    tok = zt.data.CharTokenizer(text)
    train, val = zt.data.train_val_split(tok.encode(text), val_fraction=0.1)
    lm_loader = zt.data.RandomWindowLoader(train, block_size=128, batch_size=32, seed=0)
"""

from __future__ import annotations

from .errors import DatasetNotFoundError
from .idx import IMAGE_DATASETS, load_image_dataset, load_mnist_folder, parse_idx, read_idx, write_idx
from .loader import DataLoader, RandomWindowLoader, default_collate
from .text import (
    TEXT_DATASETS,
    TOKENIZERS,
    ByteTokenizer,
    CharTokenizer,
    load_corpus,
    load_text,
    make_tokenizer,
    random_windows,
    shakespeare_folder,
    tokenizer_from_dict,
    train_val_split,
    windows,
)

__all__ = [
    "DatasetNotFoundError",
    "IMAGE_DATASETS", "load_image_dataset", "load_mnist_folder", "parse_idx", "read_idx", "write_idx",
    "TEXT_DATASETS", "load_corpus", "load_text", "shakespeare_folder",
    "TOKENIZERS", "ByteTokenizer", "CharTokenizer", "make_tokenizer", "tokenizer_from_dict",
    "train_val_split", "windows", "random_windows",
    "DataLoader", "RandomWindowLoader", "default_collate",
]
