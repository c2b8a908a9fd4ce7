"""ModelConfig: what the decoder-only transformer needs to know, read from a Hugging Face config.json.

One dataclass covers the families the transformer implements; each family's reader maps its own
config.json keys (and their defaults in transformers) onto it:

    llama, mistral, qwen2   RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP
    gpt2                    LayerNorm, learned positions, GELU (tanh) MLP, fused QKV, tied embeddings
    gpt                     the character GPT that `zt train` trains (models/gpt.py): GPT-2 shaped

>>> cfg = ModelConfig.from_hf(json.load(open("config.json")))
>>> cfg.architecture, cfg.num_layers, cfg.num_kv_heads, cfg.kv_bytes_per_token(4)
('llama', 30, 3, 46080)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

SUPPORTED = ("llama", "mistral", "qwen2", "gpt2")  # HF model_type values from_hf reads
ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")

# HF activation names -> ours
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "relu": "relu"}


class ConfigError(ValueError):
    """A model config that zigtensor cannot run: the message names the key, its value and what is expected."""


@dataclass(frozen=True)
class RopeScaling:
    """How rotary frequencies are stretched for contexts longer than the pretraining one (transformers'
    rope_parameters). Fields not used by a type keep their defaults."""

    rope_type: str  # "linear", "dynamic", "llama3" or "yarn"
    factor: float = 1.0  # context stretch
    original_max_position_embeddings: int | None = None  # llama3, yarn: the pretraining context
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn: ramp bounds, in rotations
    beta_slow: float = 1.0  # yarn
    attention_factor: float | None = None  # yarn: scale of cos/sin (None: from factor and mscale)
    mscale: float | None = None  # yarn
    mscale_all_dim: float | None = None  # yarn
    truncate: bool = True  # yarn: round the ramp bounds to whole dims


@dataclass(frozen=True)
class ModelConfig:
    """The shape and the variant choices of one decoder-only transformer."""

    architecture: str  # "llama", "mistral", "qwen2", "gpt2" or "gpt": names the checkpoint's weight layout
    vocab_size: int  # rows of the token embedding, columns of the logits
    hidden_size: int  # model width
    num_layers: int  # transformer blocks
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (grouped-query attention when fewer than num_heads)
    head_dim: int  # width of one head
    intermediate_size: int  # hidden width of the MLP (of each of gate and up when gated)
    max_position_embeddings: int  # context length the model was trained for (learned positions: a hard limit)
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm"
    norm_eps: float = 1e-6
    norm_bias: bool = False  # layernorm: learn a bias
    position: str = "rope"  # "rope" (rotary) or "learned" (an embedding table added to the tokens)
    rope_theta: float = 10000.0  # rotary base
    rope_scaling: RopeScaling | None = None
    rope_freq_factors: tuple | None = None  # per-frequency divisors (GGUF's rope_freqs tensor, Llama 3 scaling)
    activation: str = "silu"  # "silu", "gelu", "gelu_tanh" or "relu"
    gated_mlp: bool = True  # act(gate(x)) * up(x) (SwiGLU) instead of act(fc(x))
    qkv_bias: bool = False  # biases on the q, k and v projections
    out_bias: bool = False  # bias on the attention output projection
    mlp_bias: bool = False
    tie_word_embeddings: bool = False  # the output head is the token embedding
    attention_scale: float | None = None  # scores scale; None: 1 / sqrt(head_dim)
    sliding_window: int | None = None  # a query sees only the last sliding_window keys (itself included)
    sliding_layers: tuple | None = None  # per layer, whether it uses the window (None: every layer)
    dropout: float = 0.0  # training only: embeddings, attention weights, residual branches
    bos_token_id: int | None = None
    eos_token_ids: tuple = ()
    pad_token_id: int | None = None

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "max_position_embeddings"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"ModelConfig: {name} must be a positive int, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"ModelConfig: num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                              f"({self.num_kv_heads})")
        for name, allowed in (("norm", ("rmsnorm", "layernorm")), ("position", ("rope", "learned")),
                              ("activation", ("silu", "gelu", "gelu_tanh", "relu"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig: {name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(f"ModelConfig: rotary positions need an even head_dim, got {self.head_dim}")
        if self.rope_freq_factors is not None and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ConfigError(f"ModelConfig: rope_freq_factors has {len(self.rope_freq_factors)} entries, expected "
                              f"head_dim / 2 = {self.head_dim // 2}")
        if self.sliding_layers is not None and len(self.sliding_layers) != self.num_layers:
            raise ConfigError(f"ModelConfig: sliding_layers has {len(self.sliding_layers)} entries for "
                              f"{self.num_layers} layers")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelConfig: dropout must be in [0, 1), got {self.dropout!r}")

    # ------------------------------------------------------------------------------------------ derived
    @property
    def block_size(self) -> int:
        """nanoGPT's name for the context length (zigtensor.train.generate crops the context to it)."""
        return self.max_position_embeddings

    @property
    def scale(self) -> float:
        """The attention scores' scale."""
        return self.attention_scale if self.attention_scale is not None else 1.0 / math.sqrt(self.head_dim)

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of layer `layer`, or None when it attends to the whole context."""
        if self.sliding_window is None or (self.sliding_layers is not None and not self.sliding_layers[layer]):
            return None
        return self.sliding_window

    def kv_bytes_per_token(self, itemsize: int) -> int:
        """Bytes one token takes in the KV cache: K and V of every layer, at itemsize bytes per value."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------ readers
    @classmethod
    def from_hf(cls, config: dict) -> ModelConfig:
        """The config of an HF config.json (as a dict) of a supported model_type."""
        if not isinstance(config, dict):
            raise ConfigError(f"ModelConfig.from_hf: expected a config.json dict, got {type(config).__name__}")
        model_type = config.get("model_type")
        reader = _READERS.get(model_type)
        if reader is None:
            extra = " (an encoder: load it with zigtensor.llm.bert)" if model_type == "bert" else ""
            raise ConfigError(f"unsupported model_type {model_type!r}{extra}; the decoder-only transformer "
                              f"supports {', '.join(SUPPORTED)}")
        return reader(config)

    @classmethod
    def gpt(cls, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
            dropout: float = 0.0, bias: bool = True) -> ModelConfig:
        """The character GPT of `zt train` (nanoGPT's hyper-parameter names): GPT-2's layout."""
        if n_embd % n_head:
            raise ConfigError(f"GPT: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        return cls(architecture="gpt", vocab_size=vocab_size, hidden_size=n_embd, num_layers=n_layer,
                   num_heads=n_head, num_kv_heads=n_head, head_dim=n_embd // n_head,
                   intermediate_size=4 * n_embd, max_position_embeddings=block_size, norm="layernorm",
                   norm_eps=1e-5, norm_bias=bias, position="learned", activation="gelu_tanh", gated_mlp=False,
                   qkv_bias=bias, out_bias=bias, mlp_bias=bias, tie_word_embeddings=True, dropout=dropout)


# ---------------------------------------------------------------------------------------------- helpers
def _get(config: dict, key: str, default=None, required: bool = False):
    if key in config and config[key] is not None:
        return config[key]
    if required:
        raise ConfigError(f"config.json of model_type {config.get('model_type')!r} has no {key!r}")
    return default


def _int(config: dict, key: str, default=None) -> int:
    v = _get(config, key, default, required=default is None)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"config.json: {key} must be an int, got {v!r}")
    return v


def _token_ids(value) -> tuple:
    if value is None:
        return ()
    ids = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ConfigError(f"config.json: eos_token_id must be an int or a list of ints, got {value!r}")
    return tuple(ids)


def _activation(config: dict, key: str, default: str) -> str:
    name = _get(config, key, default)
    if name not in _ACTIVATIONS:
        raise ConfigError(f"config.json: {key} {name!r} is not supported; expected one of "
                          f"{', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def rope_settings(config: dict) -> tuple[float, RopeScaling | None]:
    """(theta, scaling) from either spelling of transformers: rope_parameters (v5) or rope_theta and
    rope_scaling (v4), whose "type" key was later renamed "rope_type"."""
    params = dict(_get(config, "rope_scaling", {}) or {})
    params.update(_get(config, "rope_parameters", {}) or {})
    theta = float(params.get("rope_theta", _get(config, "rope_theta", 10000.0)))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"config.json: rope type {rope_type!r} is not supported; expected one of "
                          f"{', '.join(ROPE_TYPES)}")
    if float(params.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConfigError(f"config.json: partial_rotary_factor {params['partial_rotary_factor']!r} is not "
                          "supported (only 1.0: every dim of a head rotates)")
    if rope_type == "default":
        return theta, None
    fields = {f.name for f in dataclasses.fields(RopeScaling)} - {"rope_type"}
    kwargs = {k: v for k, v in params.items() if k in fields and v is not None}
    if rope_type in ("llama3", "yarn") and "original_max_position_embeddings" not in kwargs:
        raise ConfigError(f"config.json: rope type {rope_type!r} needs original_max_position_embeddings")
    if "factor" not in kwargs:
        if rope_type != "yarn":
            raise ConfigError(f"config.json: rope type {rope_type!r} needs a factor")
        # transformers' yarn: the factor is the ratio of the new context to the pretraining one
        kwargs["factor"] = _int(config, "max_position_embeddings") / kwargs["original_max_position_embeddings"]
    return theta, RopeScaling(rope_type=rope_type, **kwargs)


def _llama_like(config: dict, architecture: str, **overrides) -> ModelConfig:
    hidden, heads = _int(config, "hidden_size"), _int(config, "num_attention_heads")
    theta, scaling = rope_settings(config)
    fields = dict(
        architecture=architecture, vocab_size=_int(config, "vocab_size"), hidden_size=hidden,
        num_layers=_int(config, "num_hidden_layers"), num_heads=heads,
        num_kv_heads=_int(config, "num_key_value_heads", heads),
        head_dim=_int(config, "head_dim", hidden // heads), intermediate_size=_int(config, "intermediate_size"),
        max_position_embeddings=_int(config, "max_position_embeddings", 2048), norm="rmsnorm",
        norm_eps=float(_get(config, "rms_norm_eps", 1e-6)), position="rope", rope_theta=theta,
        rope_scaling=scaling, activation=_activation(config, "hidden_act", "silu"), gated_mlp=True,
        qkv_bias=bool(_get(config, "attention_bias", False)), out_bias=bool(_get(config, "attention_bias", False)),
        mlp_bias=bool(_get(config, "mlp_bias", False)),
        tie_word_embeddings=bool(_get(config, "tie_word_embeddings", False)),
        bos_token_id=_get(config, "bos_token_id"), eos_token_ids=_token_ids(_get(config, "eos_token_id")),
        pad_token_id=_get(config, "pad_token_id"))
    fields.update(overrides)
    return ModelConfig(**fields)


def _llama(config: dict) -> ModelConfig:
    return _llama_like(config, "llama")


def _mistral(config: dict) -> ModelConfig:
    # NOTE: transformers' MistralConfig defaults the window to 4096 when the key is absent; null means none
    return _llama_like(config, "mistral", qkv_bias=False, out_bias=False, mlp_bias=False,
                       sliding_window=config.get("sliding_window", 4096))


def _qwen2(config: dict) -> ModelConfig:
    # Qwen2 always has q/k/v biases and none elsewhere; the window applies to the layers that layer_types (or
    # use_sliding_window with max_window_layers) mark, as in transformers' Qwen2Config
    layers = _int(config, "num_hidden_layers")
    window = _get(config, "sliding_window") if _get(config, "use_sliding_window", False) else None
    types = _get(config, "layer_types")
    if types is None:
        first = _int(config, "max_window_layers", 28)
        types = ["sliding_attention" if window is not None and i >= first else "full_attention"
                 for i in range(layers)]
    if len(types) != layers or any(t not in ("sliding_attention", "full_attention") for t in types):
        raise ConfigError(f"config.json: layer_types must list 'full_attention' or 'sliding_attention' for each "
                          f"of the {layers} layers, got {types!r}")
    sliding = tuple(t == "sliding_attention" for t in types)
    if any(sliding) and window is None:
        window = _int(config, "sliding_window")
    return _llama_like(config, "qwen2", qkv_bias=True, out_bias=False, mlp_bias=False,
                       sliding_window=window if any(sliding) else None,
                       sliding_layers=sliding if any(sliding) else None)


def _gpt2(config: dict) -> ModelConfig:
    if _get(config, "scale_attn_by_inverse_layer_idx", False):
        raise ConfigError("config.json: scale_attn_by_inverse_layer_idx=true is not supported")
    if _get(config, "add_cross_attention", False):
        raise ConfigError("config.json: add_cross_attention=true is not supported (decoder-only models only)")
    hidden, heads = _int(config, "n_embd"), _int(config, "n_head")
    if hidden % heads:
        raise ConfigError(f"config.json: n_embd ({hidden}) must be a multiple of n_head ({heads})")
    scale = None if _get(config, "scale_attn_weights", True) else 1.0
    return ModelConfig(
        architecture="gpt2", vocab_size=_int(config, "vocab_size"), hidden_size=hidden,
        num_layers=_int(config, "n_layer"), num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
        intermediate_size=_int(config, "n_inner", 4 * hidden), max_position_embeddings=_int(config, "n_positions"),
        norm="layernorm", norm_eps=float(_get(config, "layer_norm_epsilon", 1e-5)), norm_bias=True,
        position="learned", activation=_activation(config, "activation_function", "gelu_new"), gated_mlp=False,
        qkv_bias=True, out_bias=True, mlp_bias=True,
        tie_word_embeddings=bool(_get(config, "tie_word_embeddings", True)), attention_scale=scale,
        bos_token_id=_get(config, "bos_token_id"), eos_token_ids=_token_ids(_get(config, "eos_token_id")),
        pad_token_id=_get(config, "pad_token_id"))


_READERS = {"llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "gpt2": _gpt2}
