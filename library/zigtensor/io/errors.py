"""The errors of zigtensor.io: one type per family of bad input, each message naming the bad value."""

from __future__ import annotations


class SafetensorsError(ValueError):
    """A .safetensors file (or a dict given to save_file) that the format does not allow.

    The message starts with the file's path and names what is wrong: the tensor, the field and the numbers.
    """


class GGUFError(ValueError):
    """A .gguf file that cannot be read: not GGUF, truncated or corrupt, or holding a tensor type we cannot decode.

    The message is one line that starts with the file's path (or the tensor's name) and names what is wrong.
    """
