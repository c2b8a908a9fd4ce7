"""The quantization config of a GPTQ or AWQ checkpoint, read from where the ecosystem writes it and written back in
the same form.

>>> cfg = find_quant_config(folder)   # config.json quantization_config, quantize_config.json or quant_config.json
>>> cfg.method, cfg.bits, cfg.group_size, cfg.desc_act
>>> cfg.to_hf_dict()                        # what AutoGPTQ / AutoAWQ put under config.json's quantization_config

Sources: transformers' GPTQConfig / AwqConfig (config.json "quantization_config", with "quant_method"),
AutoGPTQ / GPTQModel's quantize_config.json (bits, group_size, desc_act, sym, checkpoint_format) and AutoAWQ's
quant_config.json (w_bit, q_group_size, zero_point, version).

GPTQModel's per-module overrides ("dynamic": {regex: {"bits": ..., "group_size": ...}}, a "+:" prefix optional,
"-:" for modules left unquantized; the first pattern that re.match-es a module's HF name applies, as vLLM reads it)
give a layer its own bits and group size: cfg.for_layer("lm_head").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .layouts import GPTQ_FORMATS, QuantFormatError

METHODS = ("gptq", "awq")
CONFIG_FILES = ("config.json", "quantize_config.json", "quant_config.json")


@dataclass
class QuantConfig:
    """How every quantized linear of a checkpoint is stored (one config per checkpoint, as the formats have)."""

    method: str                       # "gptq" | "awq"
    bits: int = 4
    group_size: int = 128             # -1: one group over all inputs
    desc_act: bool = False            # GPTQ act-order: columns quantized by decreasing Hessian diagonal (g_idx)
    sym: bool = True                  # GPTQ symmetric (zero = 2**(bits-1)); informational, the zeros are stored
    checkpoint_format: str = "gptq"   # GPTQ: "gptq" (zeros minus one) or "gptq_v2"; AWQ: "gemm"
    zero_point: bool = True           # AWQ asymmetric quantization
    modules_to_not_convert: list[str] = field(default_factory=list)
    lm_head: bool = False             # the LM head is quantized too (GPTQModel's and vLLM's "lm_head" key)
    dynamic: dict[str, dict] = field(default_factory=dict)   # GPTQModel's per-module overrides (see the docstring)
    source: str = ""                  # the file it was read from, for error messages
    extra: dict[str, Any] = field(default_factory=dict)   # fields we keep but do not interpret (damp_percent, ...)

    def __post_init__(self) -> None:
        where = self.source or "quantization config"
        if self.method not in METHODS:
            raise QuantFormatError(f"{where}: quant_method={self.method!r} is not supported; expected one of "
                                   f"{list(METHODS)}")
        allowed_bits = (4, 8) if self.method == "gptq" else (4,)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits not in allowed_bits:
            raise QuantFormatError(f"{where}: bits={self.bits!r} is not supported for {self.method}; expected one "
                                   f"of {list(allowed_bits)}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) \
                or (self.group_size != -1 and self.group_size < 1):
            raise QuantFormatError(f"{where}: group_size={self.group_size!r}; expected -1 or a positive integer")
        if self.method == "gptq" and self.checkpoint_format not in GPTQ_FORMATS:
            raise QuantFormatError(f"{where}: checkpoint_format={self.checkpoint_format!r} is not supported; "
                                   f"expected one of {list(GPTQ_FORMATS)}")
        if self.method == "awq" and self.checkpoint_format != "gemm":
            raise QuantFormatError(f"{where}: AWQ version={self.checkpoint_format!r} is not supported; expected "
                                   "'gemm' (AutoAWQ's GEMM layout)")
        if self.method == "awq" and not self.zero_point:
            raise QuantFormatError(f"{where}: AWQ zero_point=false is not supported; expected zero_point=true "
                                   "(the GEMM layout stores qzeros)")
        if not isinstance(self.dynamic, dict) or not all(isinstance(k, str) and isinstance(v, dict)
                                                         for k, v in self.dynamic.items()):
            raise QuantFormatError(f"{where}: dynamic={self.dynamic!r}; expected an object of module-name patterns "
                                   "to objects of overrides (bits, group_size)")
        for pattern in self.dynamic:
            try:
                re.compile(pattern[2:] if pattern.startswith(("+:", "-:")) else pattern)
            except re.error as e:
                raise QuantFormatError(f"{where}: dynamic pattern {pattern!r} is not a valid regular expression "
                                       f"({e})") from None

    def for_layer(self, name: str) -> QuantConfig:
        """The settings of the checkpoint layer `name` (its HF name): the first "dynamic" pattern that matches it
        overrides bits, group_size and desc_act; no match, or a "-:" pattern, leaves the checkpoint's."""
        for pattern, override in self.dynamic.items():
            if pattern.startswith("-:"):
                if re.match(pattern[2:], name):
                    return self
                continue
            if re.match(pattern.removeprefix("+:"), name):
                return replace(self, bits=override.get("bits", self.bits),
                               group_size=override.get("group_size", self.group_size),
                               desc_act=bool(override.get("desc_act", self.desc_act)), dynamic={},
                               source=f"{self.source or 'quantization config'} dynamic[{pattern!r}]")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "", method: str | None = None) -> QuantConfig:
        """Parse any of the three spellings; `method` fills in when the dict has no quant_method (sidecar files)."""
        if not isinstance(d, dict):
            raise QuantFormatError(f"{source or 'quantization config'}: expected a JSON object, got "
                                   f"{type(d).__name__}")
        d = dict(d)
        lm_head = d.pop("lm_head", False)
        if not isinstance(lm_head, bool):
            raise QuantFormatError(f"{source or 'quantization config'}: lm_head={lm_head!r}; expected true or false")
        m = str(d.pop("quant_method", method or "")).lower()
        if not m:
            # NOTE: AutoAWQ's quant_config.json has w_bit / q_group_size and no quant_method; AutoGPTQ's has bits.
            m = "awq" if ("w_bit" in d or "q_group_size" in d) else "gptq"
        bits = d.pop("bits", d.pop("w_bit", 4))
        group_size = d.pop("group_size", d.pop("q_group_size", 128))
        if m == "gptq":
            if d.get("is_marlin_format") or d.get("checkpoint_format") == "marlin":
                raise QuantFormatError(f"{source}: GPTQ Marlin-format checkpoints are not supported; expected "
                                       "checkpoint_format 'gptq' or 'gptq_v2'")
            d.pop("is_marlin_format", None)
            fmt = d.pop("checkpoint_format", None)
            if fmt is None:
                # NOTE: GPTQModel writes format "gptq_v2" under meta/quantizer or as "format"
                fmt = d.pop("format", "gptq")
            return cls(method="gptq", bits=bits, group_size=group_size, desc_act=bool(d.pop("desc_act", False)),
                       sym=bool(d.pop("sym", True)), checkpoint_format=str(fmt).lower(),
                       modules_to_not_convert=list(d.pop("modules_to_not_convert", None) or []), lm_head=lm_head,
                       dynamic=d.pop("dynamic", None) or {}, source=source, extra=d)
        version = str(d.pop("version", "gemm")).lower()
        return cls(method=m, bits=bits, group_size=group_size, zero_point=bool(d.pop("zero_point", True)),
                   checkpoint_format=version, modules_to_not_convert=list(d.pop("modules_to_not_convert", None) or []),
                   lm_head=lm_head, source=source, extra=d)

    def to_hf_dict(self) -> dict[str, Any]:
        """config.json's quantization_config as AutoGPTQ / AutoAWQ (via transformers) write it."""
        if self.method == "gptq":
            d = {"damp_percent": 0.01, "true_sequential": True, "static_groups": False, **self.extra,
                 "quant_method": "gptq", "bits": self.bits, "group_size": self.group_size, "desc_act": self.desc_act,
                 "sym": self.sym, "checkpoint_format": self.checkpoint_format, "lm_head": self.lm_head}
            if self.dynamic:
                d["dynamic"] = {k: dict(v) for k, v in self.dynamic.items()}
        else:
            d = {**self.extra, "quant_method": "awq", "bits": self.bits, "group_size": self.group_size,
                 "zero_point": self.zero_point, "version": "gemm"}
            if self.lm_head:   # NOTE: AutoAWQ never writes it; vLLM's AWQ config reads it
                d["lm_head"] = True
        if self.modules_to_not_convert:
            d["modules_to_not_convert"] = list(self.modules_to_not_convert)
        return d

    def sidecar(self) -> tuple[str, dict[str, Any]]:
        """(file name, content) of the tool's own config file: quantize_config.json or quant_config.json."""
        if self.method == "gptq":
            d = self.to_hf_dict()
            d.pop("quant_method")
            return "quantize_config.json", d
        d = {"zero_point": self.zero_point, "q_group_size": self.group_size, "w_bit": self.bits, "version": "GEMM"}
        if self.lm_head:
            d["lm_head"] = True
        return "quant_config.json", d


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise QuantFormatError(f"{path}: not valid JSON ({e})") from e


def find_quant_config(folder: str | Path) -> QuantConfig | None:
    """The folder's quantization config, or None for an unquantized checkpoint.

    config.json's quantization_config wins; a sidecar file that contradicts it (bits or group size) is an error.
    """
    folder = Path(folder)
    found: list[QuantConfig] = []
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        qc = _read_json(cfg_path).get("quantization_config")
        if qc is not None:
            found.append(QuantConfig.from_dict(qc, source=f"{cfg_path} quantization_config"))
    for fname, method in (("quantize_config.json", "gptq"), ("quant_config.json", None)):
        p = folder / fname
        if p.is_file():
            found.append(QuantConfig.from_dict(_read_json(p), source=str(p), method=method))
    if not found:
        return None
    first = found[0]
    for other in found[1:]:
        for attr in ("method", "bits", "group_size"):
            if getattr(other, attr) != getattr(first, attr):
                raise QuantFormatError(f"{other.source}: {attr}={getattr(other, attr)!r} contradicts "
                                       f"{first.source} ({attr}={getattr(first, attr)!r}); expected them to agree")
    # NOTE: older writers leave "lm_head" out of one of their two files; any file that says true is believed
    first.lm_head = any(f.lm_head for f in found)
    return first
