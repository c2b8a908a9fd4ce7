"""Tokenizers for language models: a `tokenizers.Tokenizer` plus special tokens, chat template and streaming decode.

Two sources, one class:

    tok = Tokenizer.from_hf_folder("path/to/model")      # tokenizer.json + tokenizer_config.json (+ generation_config)
    tok = Tokenizer.from_gguf(gguf_file.metadata)        # built from llama.cpp's tokenizer.ggml.* metadata
    ids = tok.encode("Hello")                            # bos added when the model asks for it
    tok.decode(ids)                                      # 'Hello'
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])

GGUF files carry no tokenizer.json; the vocabulary, merges, token types and flags are metadata, and the
pre-tokenizer is named by `tokenizer.ggml.pre`. We rebuild the pipeline that llama.cpp runs for that name
(llama-vocab.cpp): byte-level BPE (`tokenizer.ggml.model` 'gpt2') with the split regexes of each pre type, or
SentencePiece-style BPE with byte fallback (model 'llama': Llama 2, Mistral). Tokens typed CONTROL become special
tokens (matched whole in the text, skipped when decoding with skip_special_tokens), USER_DEFINED ones plain added
tokens.

Chat templates are Jinja2, rendered as transformers renders them: a sandboxed environment with trim_blocks and
lstrip_blocks, `raise_exception`, a `tojson` that keeps non-ASCII, `strftime_now`, and the special tokens
(`bos_token`, `eos_token`, ...) as variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, pre_tokenizers, processors


class TokenizerError(ValueError):
    """A tokenizer that cannot be built (missing files, unsupported GGUF tokenizer) or a chat it cannot render."""


# llama.cpp's token types (tokenizer.ggml.token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# The split regexes llama.cpp applies before byte-level BPE, by `tokenizer.ggml.pre` (llama-vocab.cpp). Each
# entry is the list of regexes applied one after the other, every match kept as its own piece.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_SPLIT = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GGUF_PRE_TOKENIZER_SPLITS: dict[str, list[str]] = {
    # llama.cpp's fallback, also used when a file names no pre-tokenizer (older GGUFs)
    "default": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2_SPLIT, r"\p{N}+", r"[0-9][0-9][0-9]"],
    **dict.fromkeys(["gpt2", "mpt", "olmo", "jais"], [_GPT2_SPLIT]),
    # digits one by one, then GPT-2's split
    **dict.fromkeys(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"],
                    [r"\p{N}", _GPT2_SPLIT]),
    **dict.fromkeys(["llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe"],
                    [_LLAMA3_SPLIT]),
    **dict.fromkeys(["qwen2", "stablelm2", "deepseek-r1-qwen", "megrez"], [_QWEN2_SPLIT]),
}

# Tokens that end a turn in the chat formats llama.cpp knows (llama-vocab.cpp marks these end-of-generation).
_END_OF_GENERATION_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                            "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>")

_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map that byte-level BPE vocabularies are spelled in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


# -------------------------------------------------------------------------------------------- the class
class Tokenizer:
    """A `tokenizers.Tokenizer` with the model's special tokens, end-of-generation ids and chat template.

    Args:
        backend: the `tokenizers.Tokenizer` (normalizer, pre-tokenizer, model, post-processor, decoder).
        special_tokens: {'bos_token': '<s>', 'eos_token': '</s>', ...}; absent names are None.
        eos_token_ids: ids that end generation besides eos_token (end-of-turn tokens, generation_config's).
        chat_template: a Jinja2 template, or None.
        kind: a short description for `zt info` ('byte-level BPE from GGUF (pre: smollm)').
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, special_tokens: dict[str, str | None] | None = None,
                 eos_token_ids: Iterable[int] = (), chat_template: str | None = None, kind: str = ""):
        self.backend = backend
        self.special_tokens = {name: (special_tokens or {}).get(name) for name in _SPECIAL_NAMES}
        self.chat_template = chat_template
        self.kind = kind
        ids = {int(i) for i in eos_token_ids}
        if self.eos_token_id is not None:
            ids.add(self.eos_token_id)
        self.eos_token_ids: set[int] = ids

    def __repr__(self) -> str:
        return (f"Tokenizer({self.kind or 'tokenizers'}, vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
                f"eos={self.eos_token!r}, eos_token_ids={sorted(self.eos_token_ids)}, "
                f"chat_template={'yes' if self.chat_template else 'no'})")

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_hf_folder(cls, path: str | os.PathLike) -> Tokenizer:
        """Load tokenizer.json, with tokenizer_config.json, special_tokens_map.json, chat_template.jinja/.json,
        generation_config.json and config.json when present."""
        path = os.fspath(path)
        tokenizer_file = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tokenizer_file):
            raise TokenizerError(f"{path}: no tokenizer.json (zigtensor reads the fast-tokenizer file that "
                                 "transformers saves; a folder with only tokenizer.model or vocab.txt is not "
                                 "supported)")
        try:
            backend = tokenizers.Tokenizer.from_file(tokenizer_file)
        except Exception as e:
            raise TokenizerError(f"{tokenizer_file}: cannot be read by the tokenizers library: {e}") from None
        # NOTE: tokenizer.json may fix a padding length and truncation (MiniLM's pads to 128); encode() returns the
        # text's tokens, as transformers' encode does, and callers batch and truncate themselves.
        backend.no_padding()
        backend.no_truncation()
        config = _read_json(os.path.join(path, "tokenizer_config.json"))
        special_map = _read_json(os.path.join(path, "special_tokens_map.json"))
        special = {name: _token_text(config.get(name, special_map.get(name))) for name in _SPECIAL_NAMES}

        # NOTE: tokenizer.json's post-processor decides which special tokens encode() adds; tokenizer_config's
        # add_bos_token/add_eos_token are ignored when tokenizer.json exists, as transformers 5 does.
        eos_ids: set[int] = set()
        for extra in ("generation_config.json", "config.json"):
            eos_ids |= _as_id_set(_read_json(os.path.join(path, extra)).get("eos_token_id"))
        return cls(backend, special_tokens=special, eos_token_ids=eos_ids,
                   chat_template=_hf_chat_template(path, config), kind=f"{_model_kind(backend)} from tokenizer.json")

    @classmethod
    def from_gguf(cls, metadata: dict[str, Any]) -> Tokenizer:
        """Build the tokenizer that a GGUF file's `tokenizer.*` metadata describes (see the module docstring)."""
        model = metadata.get("tokenizer.ggml.model")
        tokens = metadata.get("tokenizer.ggml.tokens")
        if model is None or tokens is None:
            raise TokenizerError("the GGUF metadata has no tokenizer (tokenizer.ggml.model and tokenizer.ggml.tokens "
                                 "are missing); pass a tokenizer from an HF folder instead")
        types = metadata.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens)
        if len(types) != len(tokens):
            raise TokenizerError(f"GGUF tokenizer: {len(tokens)} tokens but {len(types)} token types")
        builders = {"gpt2": _gguf_byte_level_bpe, "llama": _gguf_sentencepiece_bpe}
        if model not in builders:
            raise TokenizerError(f"GGUF tokenizer model {model!r} is not supported; supported: 'gpt2' (byte-level "
                                 "BPE: GPT-2, Llama 3, Qwen2, SmolLM) and 'llama' (SentencePiece BPE: Llama 2, "
                                 "Mistral)")
        try:
            backend = builders[model](metadata, tokens, types)
        except TokenizerError:
            raise
        except Exception as e:  # the tokenizers library refuses e.g. a merge of tokens missing from the vocab
            raise TokenizerError(f"GGUF tokenizer ({model}) cannot be built: {e}") from None
        add_bos_default = model == "llama"  # llama.cpp adds BOS for SentencePiece vocabularies by default
        kind = (f"byte-level BPE from GGUF (pre: {metadata.get('tokenizer.ggml.pre', 'default')})"
                if model == "gpt2" else "SentencePiece BPE from GGUF")

        def token_at(key: str) -> str | None:
            i = metadata.get(f"tokenizer.ggml.{key}")
            if i is None:
                return None
            if not 0 <= int(i) < len(tokens):
                raise TokenizerError(f"GGUF tokenizer: tokenizer.ggml.{key} = {i} is outside the vocabulary "
                                     f"(0..{len(tokens) - 1})")
            return tokens[int(i)]

        special = {"bos_token": token_at("bos_token_id"), "eos_token": token_at("eos_token_id"),
                   "unk_token": token_at("unknown_token_id"), "pad_token": token_at("padding_token_id")}
        add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos_default))
        add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
        _set_bos_eos_processor(backend, special["bos_token"] if add_bos else None,
                               special["eos_token"] if add_eos else None)

        eos_ids = {int(metadata[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                              "tokenizer.ggml.eom_token_id") if k in metadata}
        eos_ids |= {i for i, (text, t) in enumerate(zip(tokens, types))
                    if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED) and text in _END_OF_GENERATION_TEXTS}
        return cls(backend, special_tokens=special, eos_token_ids=eos_ids,
                   chat_template=metadata.get("tokenizer.chat_template"), kind=kind)

    # ------------------------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(int(token_id))

    def _id(self, name: str) -> int | None:
        text = self.special_tokens.get(name)
        return None if text is None else self.backend.token_to_id(text)

    bos_token = property(lambda self: self.special_tokens["bos_token"])
    eos_token = property(lambda self: self.special_tokens["eos_token"])
    unk_token = property(lambda self: self.special_tokens["unk_token"])
    pad_token = property(lambda self: self.special_tokens["pad_token"])
    bos_token_id = property(lambda self: self._id("bos_token"))
    eos_token_id = property(lambda self: self._id("eos_token"))
    unk_token_id = property(lambda self: self._id("unk_token"))
    pad_token_id = property(lambda self: self._id("pad_token"))

    @property
    def all_special_ids(self) -> set[int]:
        return {i for i, tok in self.backend.get_added_tokens_decoder().items() if tok.special}

    # ------------------------------------------------------------------------------------ encode / decode
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; with add_special_tokens the model's bos/eos are added as its config says."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids; special tokens (bos, eos, <|im_end|>, ...) are left out with skip_special_tokens."""
        ids = [int(i) for i in ids]
        negative = [i for i in ids if i < 0]
        if negative:
            raise ValueError(f"token ids must be >= 0, got {negative[0]}")
        # NOTE: ids past the tokenizer's vocabulary decode to nothing, as in transformers: a model's embedding
        # may be padded beyond its tokenizer (Qwen2: 151936 rows, 151665 tokens) and can still sample those ids.
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def incremental_decoder(self, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = True
                            ) -> IncrementalDecoder:
        return IncrementalDecoder(self, prompt_ids, skip_special_tokens)

    # ------------------------------------------------------------------------------------ chat
    @cached_property
    def _compiled_template(self):
        return _compile_chat_template(self.chat_template)

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                            **kwargs) -> str:
        """Render a conversation to the prompt text the model was trained on.

        Args:
            messages: [{'role': 'system' | 'user' | 'assistant' | ..., 'content': str}, ...]
            add_generation_prompt: end with the tokens that open the assistant's turn.
            **kwargs: more template variables (tools, documents, enable_thinking, ...).
        """
        if not self.chat_template:
            raise TokenizerError("this model has no chat template (none in tokenizer_config.json, "
                                 "chat_template.jinja or the GGUF metadata); pass a plain prompt instead")
        if not isinstance(messages, (list, tuple)):
            raise TokenizerError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                                 f"got {type(messages).__name__}")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise TokenizerError(f"messages[{i}] must be a dict with a 'role' and a 'content', got {m!r}")
        import jinja2

        variables = {**self.special_tokens, "tools": None, "documents": None, **kwargs}
        try:
            return self._compiled_template.render(messages=[dict(m) for m in messages],
                                                  add_generation_prompt=add_generation_prompt, **variables)
        except jinja2.TemplateError as e:
            raise TokenizerError(f"the chat template failed on these messages: {e}") from None


# ------------------------------------------------------------------------------------- streaming decode
class IncrementalDecoder:
    """Feed token ids one at a time; get back the new text, never half of a multi-byte UTF-8 character.

    Decoding a token alone is wrong (SentencePiece drops a leading space, byte-level BPE may hold part of a
    character), so each step decodes a short window of recent tokens and returns what it adds over the same
    window without the new tokens. Text ending in U+FFFD (an incomplete UTF-8 sequence) is held until the next
    token completes it, or until `flush()` at the end.

        dec = tok.incremental_decoder()
        for t in ids: print(dec.feed(t), end="")
        print(dec.flush())
    """

    # NOTE: the window starts this many tokens before the new ones, enough for any decoder's context
    # (SentencePiece's leading-space rule, WordPiece's '##' joins), as vLLM does.
    CONTEXT_TOKENS = 5

    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = [int(i) for i in prompt_ids]
        self.prefix_offset = max(len(self.ids) - self.CONTEXT_TOKENS, 0)
        self.read_offset = len(self.ids)
        self.text = ""  # everything returned so far

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def feed(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is still incomplete)."""
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        delta = new_text[len(prefix_text):]
        self.prefix_offset = max(self.read_offset, len(self.ids) - self.CONTEXT_TOKENS)
        self.read_offset = len(self.ids)
        self.text += delta
        return delta

    def flush(self) -> str:
        """At the end of the stream: whatever is still held back (an incomplete character decodes as U+FFFD)."""
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        delta = new_text[len(prefix_text):] if new_text.startswith(prefix_text) else ""
        self.prefix_offset = self.read_offset = len(self.ids)
        self.text += delta
        return delta


# --------------------------------------------------------------------------------------- GGUF builders
def _set_bos_eos_processor(backend: tokenizers.Tokenizer, bos: str | None, eos: str | None) -> None:
    """A post-processor that adds `bos` before and `eos` after the text (either may be None)."""
    single = (f"{bos}:0 " if bos else "") + "$A:0" + (f" {eos}:0" if eos else "")
    pair = single + (f" {bos}:1" if bos else "") + " $B:1" + (f" {eos}:1" if eos else "")
    special = [(t, backend.token_to_id(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
    missing = [t for t, i in special if i is None]
    if missing:
        raise TokenizerError(f"special token {missing[0]!r} is not in the vocabulary")
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)


def _add_gguf_added_tokens(backend: tokenizers.Tokenizer, tokens: list[str], types: list[int]) -> None:
    """CONTROL tokens as special added tokens, USER_DEFINED as plain added ones: both are matched whole."""
    control = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_USER_DEFINED]
    if control:
        backend.add_special_tokens(control)
    if user:
        backend.add_tokens(user)


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)  # NOTE: a few files repeat a token text (e.g. padding); the first id wins
    return vocab


def _gguf_byte_level_bpe(metadata: dict, tokens: list[str], types: list[int]) -> tokenizers.Tokenizer:
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in GGUF_PRE_TOKENIZER_SPLITS:
        raise TokenizerError(f"GGUF pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; supported: "
                             f"{', '.join(sorted(GGUF_PRE_TOKENIZER_SPLITS))}")
    merges = metadata.get("tokenizer.ggml.merges")
    if not merges:
        raise TokenizerError("GGUF byte-level BPE tokenizer without tokenizer.ggml.merges")
    spell = _bytes_to_unicode()
    alphabet = set(spell.values())
    # Regular tokens are spelled in GPT-2's byte alphabet already; respell the odd one that is not, so that
    # every byte sequence stays reachable. Control and user-defined tokens keep their text (matched whole).
    spelled = [t if k in (TOKEN_CONTROL, TOKEN_USER_DEFINED) or set(t) <= alphabet
               else "".join(spell[b] for b in t.encode("utf-8")) for t, k in zip(tokens, types)]
    pairs = []
    for i, m in enumerate(merges):
        left, sep, right = m.partition(" ")
        if not sep:
            raise TokenizerError(f"GGUF merge {i} ({m!r}) is not two tokens separated by a space")
        pairs.append((left, right))
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=_vocab(spelled), merges=pairs, fuse_unk=False,
                                                         byte_fallback=False))
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in GGUF_PRE_TOKENIZER_SPLITS[pre]]
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    _add_gguf_added_tokens(backend, tokens, types)
    return backend


def _sentencepiece_merges(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """The BPE merges a SentencePiece vocabulary implies: every split of a token into two tokens, best score first.

    SentencePiece BPE merges the pair whose joined piece scores highest, so ranking each split by the score of
    the token it makes gives an equivalent merge list. Ties are ordered as transformers orders them (longer
    left piece first, then longer right piece, then vocabulary order), so both tokenize alike.
    """
    merges = []
    for token, score in dict(zip(tokens, scores)).items():
        splits = [(token[:cut], token[cut:]) for cut in range(1, len(token))]
        splits = sorted((lr for lr in splits if lr[0] in vocab and lr[1] in vocab),
                        key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges.extend((score, left, right) for left, right in splits)
    merges.sort(key=lambda m: (m[0], len(m[1]), len(m[2])), reverse=True)  # stable: ties keep their order
    return [(left, right) for _, left, right in merges]


def _gguf_sentencepiece_bpe(metadata: dict, tokens: list[str], types: list[int]) -> tokenizers.Tokenizer:
    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
        raise TokenizerError("GGUF SentencePiece tokenizer needs tokenizer.ggml.scores, one per token")
    vocab = _vocab(tokens)
    merges = _sentencepiece_merges(tokens, scores, vocab)
    unk_id = metadata.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None else None
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                                                         byte_fallback=True))
    add_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first" if add_prefix else "never",
                                                     split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    backend.decoder = decoders.Sequence(steps)
    _add_gguf_added_tokens(backend, tokens, types)
    return backend


# ------------------------------------------------------------------------------------------ HF folders
def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"{path}: not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict {'content': ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _as_id_set(value) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


def _hf_chat_template(path: str, config: dict) -> str | None:
    """chat_template.jinja, chat_template.json or tokenizer_config.json's chat_template, in that order."""
    jinja_file = os.path.join(path, "chat_template.jinja")
    if os.path.isfile(jinja_file):
        with open(jinja_file, encoding="utf-8") as f:
            return f.read()
    template = _read_json(os.path.join(path, "chat_template.json")).get("chat_template", config.get("chat_template"))
    if isinstance(template, list):  # named templates: [{'name': 'default', 'template': ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _model_kind(backend: tokenizers.Tokenizer) -> str:
    model = type(backend.model).__name__
    if model == "BPE" and isinstance(backend.decoder, decoders.ByteLevel):
        return "byte-level BPE"
    return model


# ---------------------------------------------------------------------------------------- chat templates
def _compile_chat_template(template: str):
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """{% generation %}...{% endgeneration %} marks assistant text for training masks; rendering ignores it."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # NOTE: Jinja's own tojson escapes HTML characters (<, >, &), which would change the prompt
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"the chat template is not valid Jinja2: {e.message} (line {e.lineno})") from None
