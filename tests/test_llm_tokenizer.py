"""zigtensor.llm.tokenizer against transformers' AutoTokenizer loading the same GGUF file or HF folder."""

from __future__ import annotations

import json
import os

import pytest
from llm_fixtures import minilm_folder, smollm2_gguf, write_gguf
from oracle import oracle

from zigtensor.io.gguf import open_gguf
from zigtensor.llm.tokenizer import IncrementalDecoder, Tokenizer, TokenizerError

transformers = oracle("transformers")
tokenizers = oracle("tokenizers")

TEXTS = [
    "Hello world",
    "",
    " ",
    "  leading spaces, runs   of   spaces,\ttabs\t\tand\n\n\nnewlines\r\n  ",
    "unicode: café naïve Ünïcödé ß Ωμέγα Привет мир 日本語のテキスト 中文 한국어 العربية",
    "emoji 😀👍🏽🇫🇷 👩‍👩‍👧 ✨",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f(12))\n",
    "numbers 1234567 3.14159 -42 1e10 0x1F",
    "don't I'LL we've THEY'RE it's",
    "<|im_start|>user\nhi<|im_end|>\n",
    "\u00a0no-break\u200bzero-width\ufeffbom",
    "a" * 80,
    "Ġ literal Ġ chars and ĠĠ",
]
CHATS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! How can I help? 😀"},
     {"role": "user", "content": "Write code:\n```py\nprint(1)\n```"}],
]


# ------------------------------------------------------------------------------------------ SmolLM2 GGUF
@pytest.fixture(scope="module")
def smollm2_pair():
    path = smollm2_gguf()
    ours = Tokenizer.from_gguf(open_gguf(path).metadata)
    theirs = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return ours, theirs


@pytest.mark.parametrize("text", TEXTS)
def test_gguf_encode_decode_parity(smollm2_pair, text):
    ours, theirs = smollm2_pair
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids, skip_special_tokens=False)


def test_gguf_digits_split_as_llama_cpp(smollm2_pair):
    # NOTE: llama.cpp's 'smollm' pre-tokenizer (like the model's own tokenizer.json) splits every \p{N} character
    # off before GPT-2's regex; transformers' GGUF conversion uses the GPT-2 regex alone. The two agree on digit
    # runs (this vocabulary has no merges across digits) and differ only where a space meets a non-ASCII number.
    ours, theirs = smollm2_pair
    assert ours.encode(" 2024") == theirs.encode(" 2024")
    assert [ours.id_to_token(i) for i in ours.encode(" ²³")] == ["Ġ", "Â²", "Â³"]
    assert [theirs.convert_ids_to_tokens(i) for i in theirs.encode(" ²³")] == ["ĠÂ", "²", "Â³"]


def test_gguf_special_tokens(smollm2_pair):
    ours, theirs = smollm2_pair
    assert ours.vocab_size == len(theirs) == 49152
    assert (ours.bos_token, ours.eos_token, ours.unk_token, ours.pad_token) == \
        (theirs.bos_token, theirs.eos_token, theirs.unk_token, theirs.pad_token)
    assert (ours.bos_token_id, ours.eos_token_id) == (theirs.bos_token_id, theirs.eos_token_id) == (1, 2)
    assert ours.eos_token_ids == {2, 0}  # <|im_end|>, and <|endoftext|> which llama.cpp also ends on
    assert ours.encode("<|im_end|>") == [2]
    assert ours.all_special_ids >= {0, 1, 2}
    assert "byte-level BPE" in ours.kind and "smollm" in ours.kind


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_gguf_chat_template_parity(smollm2_pair, chat, add_generation_prompt):
    ours, theirs = smollm2_pair
    got = ours.apply_chat_template(chat, add_generation_prompt=add_generation_prompt)
    want = theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert got == want
    assert ours.encode(got) == theirs.encode(want)


@pytest.mark.parametrize("text", [t for t in TEXTS if t])
def test_incremental_decode_equals_full_decode(smollm2_pair, text):
    ours, _ = smollm2_pair
    ids = ours.encode(text)
    dec = ours.incremental_decoder()
    pieces = [dec.feed(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)  # never half a character
    assert "".join(pieces) + dec.flush() == ours.decode(ids)


def test_incremental_decode_holds_partial_characters(smollm2_pair):
    ours, _ = smollm2_pair
    ids = ours.encode("😀")
    assert len(ids) > 1  # the emoji's 4 bytes span several tokens
    dec = ours.incremental_decoder()
    assert [dec.feed(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert dec.feed(ids[-1]) == "😀"
    dec = ours.incremental_decoder()
    dec.feed(ids[0])
    assert dec.flush() == "\ufffd"  # the stream ended mid-character


def test_incremental_decode_after_prompt(smollm2_pair):
    ours, _ = smollm2_pair
    prompt, completion = ours.encode("The answer is"), ours.encode(" forty-two, 42 ✓")
    dec = IncrementalDecoder(ours, prompt)
    text = "".join(dec.feed(i) for i in completion) + dec.flush()
    assert text == ours.decode(prompt + completion)[len(ours.decode(prompt)):] == " forty-two, 42 ✓"
    # special tokens are skipped by default and kept on request
    dec = ours.incremental_decoder(skip_special_tokens=False)
    assert "".join(dec.feed(i) for i in ours.encode("<|im_start|>hi<|im_end|>")) == "<|im_start|>hi<|im_end|>"


# ------------------------------------------------------------------------------------ MiniLM (HF folder)
@pytest.fixture(scope="module")
def minilm_pair():
    folder = minilm_folder()
    return Tokenizer.from_hf_folder(folder), transformers.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("text", TEXTS)
def test_hf_folder_parity(minilm_pair, text):
    ours, theirs = minilm_pair
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    dec = ours.incremental_decoder()
    assert "".join(dec.feed(i) for i in ids) + dec.flush() == ours.decode(ids)


def test_hf_folder_no_padding_or_truncation(minilm_pair):
    ours, _ = minilm_pair
    assert ours.encode("hello") == [101, 7592, 102]  # tokenizer.json pads to 128; encode does not
    assert len(ours.encode("word " * 600)) == 602
    assert ours.bos_token is None and ours.unk_token == "[UNK]" and ours.pad_token == "[PAD]"
    assert ours.chat_template is None
    with pytest.raises(TokenizerError, match="no chat template"):
        ours.apply_chat_template(CHATS[0])


# ---------------------------------------------------------------------------- synthetic GGUF tokenizers
CORPUS = ["Hello world! The quick brown fox jumps over the lazy dog. 12345 67890 3.14",
          "def main():\n    print('hi')  # comment\n\treturn 42\n", "Ünïcödé café naïve 日本語 中文 😀",
          "I'm we're they'll you'd it's DON'T", "   multiple   spaces\n\n\nand newlines\r\n"] * 20
SYNTHETIC_TEXTS = CORPUS[:5] + ["   12345678 abc  \n\n x", "'S 'LL ÀÉÎ 日本語 😀", " leading", "</s> in <s>x",
                                "<|im_start|>a<|im_end|>"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" \
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"


def _byte_level_vocab():
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    return tokens, merges


def _sentencepiece_vocab():
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, show_progress=False))
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    pieces = sorted(vocab, key=vocab.get)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, types, scores


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizers")


def _pair(folder, name, metadata):
    path = write_gguf(str(folder / name), "llama", {"llama.block_count": 1, **metadata}, {})
    ours = Tokenizer.from_gguf(open_gguf(path).metadata)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    return ours, theirs


@pytest.mark.parametrize("pre", ["gpt2", "llama-bpe", "qwen2"])
def test_synthetic_byte_level_parity(synthetic_dir, pre):
    tokens, merges = _byte_level_vocab()
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    ours, theirs = _pair(synthetic_dir, f"bpe_{pre}.gguf", {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": True, "tokenizer.chat_template": TEMPLATE})
    for text in SYNTHETIC_TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ids[0] == 1  # add_bos_token
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
    chat = CHATS[1]
    assert ours.apply_chat_template(chat) == theirs.apply_chat_template(chat, tokenize=False,
                                                                        add_generation_prompt=True)


def test_synthetic_sentencepiece_parity(synthetic_dir):
    tokens, types, scores = _sentencepiece_vocab()
    ours, theirs = _pair(synthetic_dir, "spm.gguf", {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0})
    assert ours.kind == "SentencePiece BPE from GGUF"
    for text in SYNTHETIC_TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
        dec = ours.incremental_decoder()
        pieces = [dec.feed(i) for i in ids]
        assert all("\ufffd" not in p for p in pieces), text  # byte-fallback tokens held until complete
        assert "".join(pieces) + dec.flush() == ours.decode(ids), text


def test_hf_folder_add_bos_and_generation_config(synthetic_dir):
    tokens, merges = _byte_level_vocab()
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    ours_gguf, _ = _pair(synthetic_dir, "bpe_for_folder.gguf", {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt2", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2})
    folder = synthetic_dir / "hf_folder"
    folder.mkdir()
    # tokenizer.json adds BOS; tokenizer_config.json's add_bos_token says otherwise and loses (transformers 5)
    ours_gguf.backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    ours_gguf.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "bos_token": "<|im_start|>",
        "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "special": True}, "unk_token": None}))
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    ours = Tokenizer.from_hf_folder(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    for text in SYNTHETIC_TEXTS:
        assert ours.encode(text) == theirs.encode(text), text
    assert ours.encode("x")[0] == 1 and ours.encode("x", add_special_tokens=False)[0] != 1
    assert ours.eos_token == "<|im_end|>" and ours.eos_token_ids == {0, 2}
    assert ours.apply_chat_template(CHATS[2]) == theirs.apply_chat_template(CHATS[2], tokenize=False,
                                                                            add_generation_prompt=True)


# ------------------------------------------------------------------------------------------------ errors
def _metadata(**overrides):
    tokens, merges = _byte_level_vocab()
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt2", "tokenizer.ggml.tokens": tokens,
          "tokenizer.ggml.merges": merges, "tokenizer.ggml.eos_token_id": 2}
    md.update(overrides)
    return {k: v for k, v in md.items() if v is not None}


def test_unknown_gguf_tokenizer_errors():
    with pytest.raises(TokenizerError, match=r"pre-tokenizer 'nonesuch' \(tokenizer.ggml.pre\) is not supported; "
                                             r"supported: .*llama-bpe.*smollm"):
        Tokenizer.from_gguf(_metadata(**{"tokenizer.ggml.pre": "nonesuch"}))
    with pytest.raises(TokenizerError, match="tokenizer model 'bert' is not supported"):
        Tokenizer.from_gguf(_metadata(**{"tokenizer.ggml.model": "bert"}))
    with pytest.raises(TokenizerError, match="has no tokenizer"):
        Tokenizer.from_gguf({"general.architecture": "llama"})
    with pytest.raises(TokenizerError, match=r"tokenizer.ggml.eos_token_id = 99999 is outside the vocabulary"):
        Tokenizer.from_gguf(_metadata(**{"tokenizer.ggml.eos_token_id": 99999}))
    with pytest.raises(TokenizerError, match="needs tokenizer.ggml.scores"):
        Tokenizer.from_gguf(_metadata(**{"tokenizer.ggml.model": "llama"}))


def test_missing_pre_type_is_llama_cpps_default():
    # llama.cpp's default regexes, applied one after the other: punctuation runs, GPT-2's split, digit runs,
    # then digit triples
    md = _metadata()
    del md["tokenizer.ggml.pre"]
    tok = Tokenizer.from_gguf(md)
    assert "pre: default" in tok.kind
    pieces = [p for p, _ in tok.backend.pre_tokenizer.pre_tokenize_str("Hi, there!!! 1234567 x")]
    assert pieces == ["Hi", ",", "Ġthere", "!!!", "Ġ", "123", "456", "7", "Ġx"]


def test_missing_tokenizer_json(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.from_hf_folder(tmp_path)


def test_chat_template_errors_and_sandbox():
    tok = Tokenizer.from_gguf(_metadata(**{"tokenizer.chat_template": TEMPLATE}))
    with pytest.raises(TokenizerError, match="must be a dict with a 'role'"):
        tok.apply_chat_template([{"content": "no role"}])
    with pytest.raises(TokenizerError, match="must be a list"):
        tok.apply_chat_template("hello")
    strict = Tokenizer.from_gguf(_metadata(**{"tokenizer.chat_template":
                                              "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first "
                                              "message must be from the user') }}{% endif %}ok"}))
    assert strict.apply_chat_template([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(TokenizerError, match="first message must be from the user"):
        strict.apply_chat_template([{"role": "assistant", "content": "x"}])
    escape = Tokenizer.from_gguf(_metadata(**{"tokenizer.chat_template": "{{ messages.__class__.__mro__ }}"}))
    with pytest.raises(TokenizerError, match="failed"):
        escape.apply_chat_template([{"role": "user", "content": "x"}])
    bad = Tokenizer.from_gguf(_metadata(**{"tokenizer.chat_template": "{% for m in messages %}"}))
    with pytest.raises(TokenizerError, match="not valid Jinja2"):
        bad.apply_chat_template([{"role": "user", "content": "x"}])
    rich = Tokenizer.from_gguf(_metadata(**{"tokenizer.chat_template":
                                            "{{ bos_token }}|{{ eos_token }}|{{ messages | tojson }}|{{ extra }}"
                                            "{% generation %}G{% endgeneration %}"}))
    out = rich.apply_chat_template([{"role": "user", "content": "é<b>"}], extra=7)
    assert out == 'None|<|im_end|>|[{"role": "user", "content": "é<b>"}]|7G'


def test_decode_ids_outside_the_vocabulary():
    tok = Tokenizer.from_gguf(_metadata())
    with pytest.raises(ValueError, match="token ids must be >= 0, got -1"):
        tok.decode([1, -1])
    # ids of a padded embedding beyond the tokenizer decode to nothing, as in transformers
    assert tok.decode([tok.vocab_size + 5]) == ""
    assert tok.decode(tok.encode("Hello") + [tok.vocab_size]) == "Hello"


def test_merge_of_unknown_tokens_is_a_tokenizer_error():
    with pytest.raises(TokenizerError, match=r"GGUF tokenizer \(gpt2\) cannot be built"):
        Tokenizer.from_gguf(_metadata(**{"tokenizer.ggml.merges": ["Ġ t", "zzz qqq"]}))
