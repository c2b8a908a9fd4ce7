"""Kernel sources as text: reading kernels/<family>.cu with #defines prepended, the kernel directory's headers
it includes (kernels/zt_device.cuh), its variant lists, and the signatures of its `extern "C" __global__` kernels
(with the struct types they take by value). Signatures come from the file's own text: what a header defines is
never parsed, so a header holds device helpers only, never a kernel, a parameter type or a macro a kernel
signature uses.

Nothing here needs CuPy or a GPU: the launch checker (kernel_check.py) and the compile test use it as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

# Markers a .cu file puts before pointer parameters; the loader defines them empty, and each file defines
# them empty itself under #ifndef so that it compiles standalone with nvcc.
STRIDED_MARKER = "ZT_STRIDED"  # the array may be a non-contiguous view (the kernel takes its strides)
NULLABLE_MARKER = "ZT_NULLABLE"  # None may be passed (NULL); the kernel checks the pointer before using it
MARKERS = (STRIDED_MARKER, NULLABLE_MARKER)

# C type (after macro expansion, qualifiers removed) -> NumPy dtype name. None: `void*`, any dtype.
CTYPE_DTYPES: dict[str, str | None] = {
    "float": "float32", "double": "float64", "__half": "float16", "half": "float16",
    "__nv_bfloat16": "bfloat16", "nv_bfloat16": "bfloat16", "bool": "bool",
    "signed char": "int8", "int8_t": "int8", "unsigned char": "uint8", "uint8_t": "uint8",
    "short": "int16", "short int": "int16", "int16_t": "int16",
    "unsigned short": "uint16", "unsigned short int": "uint16", "uint16_t": "uint16",
    "int": "int32", "signed int": "int32", "int32_t": "int32",
    "unsigned": "uint32", "unsigned int": "uint32", "uint32_t": "uint32",
    "long": "int64", "long int": "int64", "long long": "int64", "long long int": "int64", "int64_t": "int64",
    "ptrdiff_t": "int64", "unsigned long": "uint64", "unsigned long long": "uint64",
    "unsigned long long int": "uint64", "uint64_t": "uint64", "size_t": "uint64",
    "void": None,
}
# The C spelling of each dtype, for launchers that turn an array's dtype into a -D define (ctype_of).
DTYPE_CTYPES = {
    "float32": "float", "float64": "double", "float16": "__half", "bfloat16": "__nv_bfloat16", "bool": "bool",
    "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
    "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
}
_NP_DTYPES = {name: np.dtype(ml_dtypes.bfloat16 if name == "bfloat16" else name) for name in DTYPE_CTYPES}

_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "__grid_constant__", "struct"}
_DECL_SPECIFIERS = {"void", "static", "inline", "__inline__", "__noinline__", "__forceinline__"}
_DECL_ATTRIBUTES = {"__launch_bounds__", "__maxnreg__", "__cluster_dims__"}
_IDENT = re.compile(r"[A-Za-z_]\w*\Z")
_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+\w*|\S")


class KernelSourceError(ValueError):
    """A .cu file or a define set that the loader cannot read (the message names the file and line)."""


@dataclass(frozen=True)
class Param:
    """One kernel parameter as the launch checker sees it."""

    name: str
    ctype: str  # the C type after macro expansion, without qualifiers: "float", "long long", "ZtCopyLayout"
    kind: str  # "pointer", "pointer_table" (T**: an array of device pointers, uint64), "scalar", "struct"
    dtype: str | None  # NumPy dtype name of the element (pointer) or value (scalar); None for void*
    const: bool = False  # the array is only read (pointers)
    strided: bool = False  # ZT_STRIDED: a non-contiguous view is fine
    nullable: bool = False  # ZT_NULLABLE: None passes NULL
    struct_dtype: np.dtype | None = None  # the C layout of a struct passed by value

    def decl(self) -> str:
        """The declaration as C spells it, for error messages: 'const float* x'."""
        prefix = "".join(m + " " for m, on in ((STRIDED_MARKER, self.strided), (NULLABLE_MARKER, self.nullable))
                         if on)
        const = "const " if self.const else ""
        stars = {"pointer": "*", "pointer_table": "* const*" if self.const else "**"}.get(self.kind, "")
        if self.kind == "pointer_table":
            return f"{prefix}{self.ctype}{stars} {self.name}"
        return f"{prefix}{const}{self.ctype}{stars} {self.name}"


@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[Param, ...]
    line: int  # 1-based line of the declaration in its .cu file

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(p.decl() for p in self.params)})"


# ------------------------------------------------------------------------------------------------ files
def kernel_path(kernel_dir: Path, family: str) -> Path:
    if not isinstance(family, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", family):
        raise KernelSourceError(f"kernel family must be a lowercase name like 'elementwise', got {family!r}")
    path = Path(kernel_dir) / f"{family}.cu"
    if not path.is_file():
        known = sorted(p.stem for p in Path(kernel_dir).glob("*.cu")) if Path(kernel_dir).is_dir() else []
        raise KernelSourceError(f"no kernel file {path} for family {family!r}; known families: {known} "
                                f"(kernel directory {kernel_dir}; set ZT_KERNEL_DIR to use another)")
    return path


def define_text(name: str, value) -> str:
    """The text after `#define name`, validated: bools become 1/0, numbers and C type names stay as given."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise KernelSourceError(f"define name must be a C identifier, got {name!r}")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, str) and "\n" not in value and "\\" not in value:
        return value.strip()
    raise KernelSourceError(f"define {name}: expected a bool, a number or a one-line string, got {value!r}")


def normalize_defines(defines: dict | None) -> tuple[tuple[str, str], ...]:
    """Defines as a sorted tuple of (name, text): hashable, the cache key and the prelude's order."""
    if defines is None:
        return ()
    if not isinstance(defines, dict):
        raise KernelSourceError(f"defines must be a dict of name -> value, got {type(defines).__name__}")
    return tuple(sorted((name, define_text(name, value)) for name, value in defines.items()))


def prelude(defines: tuple[tuple[str, str], ...], filename: str) -> str:
    """What goes before the file's text: the markers, the defines, and a #line so that compiler messages
    point at the real file and line."""
    lines = [f"#define {m}" for m in MARKERS if m not in dict(defines)]
    lines += [f"#define {name} {text}".rstrip() for name, text in defines]
    lines.append(f'#line 1 "{filename}"')
    return "\n".join(lines) + "\n"


def read_source(kernel_dir: Path, family: str, defines: dict | None = None) -> tuple[str, str]:
    """(full source with the prelude, display filename 'kernels/<family>.cu')."""
    path = kernel_path(kernel_dir, family)
    filename = f"kernels/{family}.cu"
    return prelude(normalize_defines(defines), filename) + path.read_text(), filename


_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.MULTILINE)


def local_includes(kernel_dir: Path, source: str) -> tuple[tuple[str, str], ...]:
    """The headers of the kernel directory that `source` includes with `#include "name"`, directly or through
    one another: (name, text) pairs in the order first met. They are part of what a binary is compiled from,
    so the disk cache key hashes their text; a quoted include that is not in the directory (a CUDA header
    spelled with quotes) is left to the compiler's include path."""
    found: dict[str, str] = {}
    pending = [source]
    while pending:
        for name in _LOCAL_INCLUDE.findall(strip_comments(pending.pop(0))):
            path = Path(kernel_dir) / name
            if name not in found and path.is_file():
                found[name] = path.read_text()
                pending.append(found[name])
    return tuple(found.items())


def parse_variants(source: str) -> list[dict[str, str]]:
    """The define sets of the `// zt-variants: A=1,B=x | C=2 | ...` header line (an empty set: defaults).

    A file without the line has one variant, its defaults.
    """
    match = re.search(r"^[ \t]*//[ \t]*zt-variants:(.*)$", source, re.MULTILINE)
    if match is None:
        return [{}]
    variants = []
    for part in match.group(1).split("|"):
        variant = {}
        for item in filter(None, (s.strip() for s in part.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not _IDENT.match(name):
                raise KernelSourceError(f"zt-variants: {item!r} is not NAME=VALUE")
            variant[name] = value.strip() if eq else "1"
        variants.append(variant)
    return variants


# ------------------------------------------------------------------------------------------------ parsing
def strip_comments(source: str) -> str:
    """Comments replaced by spaces (newlines kept, so offsets map to the same lines); strings kept."""

    def blank(m: re.Match) -> str:
        text = m.group(0)
        return text if text[0] in "\"'" else re.sub(r"[^\n]", " ", text)

    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', blank, source, flags=re.DOTALL)


def _object_macros(text: str) -> dict[str, list[str]]:
    """Object-like #defines of the file (function-like ones are skipped); the first definition wins, which
    is the default under `#ifndef X / #define X default`."""
    text = re.sub(r"\\\n", " ", text)
    macros: dict[str, list[str]] = {}
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(?![\w(])[ \t]*(.*)$", text, re.MULTILINE):
        macros.setdefault(m.group(1), _TOKEN.findall(m.group(2)))
    return macros


def _expand(tokens: list[str], macros: dict[str, list[str]], active: frozenset = frozenset()) -> list[str]:
    out: list[str] = []
    for tok in tokens:
        if tok in macros and tok not in active:
            out += _expand(macros[tok], macros, active | {tok})
        else:
            out.append(tok)
    return out


def _matching(text: str, start: int, open_: str = "(", close: str = ")") -> int:
    """Index just past the bracket that closes the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
    raise KernelSourceError(f"unbalanced {open_!r} at offset {start}")


def _extern_c_blocks(text: str) -> list[tuple[int, int]]:
    return [(m.end() - 1, _matching(text, m.end() - 1, "{", "}"))
            for m in re.finditer(r'\bextern\s+"C"\s*\{', text)]


def _is_extern_c(text: str, pos: int, blocks: list[tuple[int, int]]) -> bool:
    if any(a < pos < b for a, b in blocks):
        return True
    start = max(text.rfind(c, 0, pos) for c in ";{}")
    return re.search(r'\bextern\s+"C"', text[start + 1:pos]) is not None


def _type_name(tokens: list[str]) -> str:
    return " ".join(tokens)


def _dtype_of(ctype: str) -> np.dtype:
    return _NP_DTYPES[CTYPE_DTYPES[ctype]]


def _struct_dtype(body: str, macros: dict, structs: _Structs, align: int, where: str) -> np.dtype:
    """The NumPy dtype with the C layout of a struct body: natural alignment of each field, the struct aligned
    to its widest field (or the __align__/alignas given), size rounded up to that alignment."""
    names, formats, offsets = [], [], []
    offset, struct_align = 0, max(align, 1)
    for stmt in filter(None, (s.strip() for s in body.split(";"))):
        tokens = [t for t in _expand(_TOKEN.findall(stmt), macros) if t not in _QUALIFIERS]
        # the declarators start at the first name followed by ',' or '[' or nothing: `long long shape[8]`
        first = next((i for i, t in enumerate(tokens)
                      if _IDENT.match(t) and (i + 1 == len(tokens) or tokens[i + 1] in {",", "["})), len(tokens))
        type_tokens, tokens = tokens[:first], tokens[first:]
        ctype = _type_name(type_tokens)
        if ctype in structs:
            field_dtype = structs[ctype]
        elif CTYPE_DTYPES.get(ctype) is not None:
            field_dtype = _dtype_of(ctype)
        else:
            raise KernelSourceError(f"{where}: field type {ctype!r} is not one the loader knows "
                                    f"(C scalar types {sorted(k for k, v in CTYPE_DTYPES.items() if v)} or a struct "
                                    "defined earlier in the file)")
        for decl in " ".join(tokens).split(","):
            parts = decl.split()
            if not parts or not _IDENT.match(parts[0]):
                raise KernelSourceError(f"{where}: cannot read field declaration {stmt!r}")
            count = 1
            if len(parts) > 1:
                dims = re.fullmatch(r"\[\s*([\d\s+*/()-]+?)\s*\]", " ".join(parts[1:]))
                if dims is None:
                    raise KernelSourceError(f"{where}: cannot read field declaration {stmt!r} (array sizes must be "
                                            "integer constants or macros that expand to them)")
                # NOTE: only digits, spaces, + - * / and parentheses reach eval; C's / on integers is Python's //
                count = int(eval(dims.group(1).replace("/", "//"), {"__builtins__": {}}))  # noqa: S307
            field_align = field_dtype.alignment
            offset = -(-offset // field_align) * field_align
            names.append(parts[0])
            formats.append(field_dtype if count == 1 else (field_dtype, (count,)))
            offsets.append(offset)
            offset += field_dtype.itemsize * count
            struct_align = max(struct_align, field_align)
    # NOTE: only the layout inside the struct matters: the driver copies each argument from its own host
    # pointer into the parameter buffer at the offset the compiled kernel expects.
    size = -(-offset // struct_align) * struct_align
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


class _Structs:
    """The structs of a comment-free source (`struct [__align__(N)] Name { ... };`, `typedef struct { ... } Name;`),
    laid out only when a kernel takes one by value: helper structs with methods or templates never are."""

    _PATTERN = re.compile(r"\b(typedef\s+)?struct\s+(?:(?:__align__|alignas)\s*\(\s*(\w+)\s*\)\s*)?(\w+)?\s*\{")

    def __init__(self, text: str, macros: dict):
        self.macros = macros
        self.bodies: dict[str, tuple[str, int, int]] = {}  # name -> (body, alignment, line)
        self.dtypes: dict[str, np.dtype] = {}
        for m in self._PATTERN.finditer(text):
            end = _matching(text, m.end() - 1, "{", "}")
            align_tokens = _expand([m.group(2)], macros) if m.group(2) else ["1"]
            align = int(align_tokens[0]) if len(align_tokens) == 1 and align_tokens[0].isdigit() else 1
            name = m.group(3)
            if m.group(1):
                alias = re.match(r"\s*(\w+)\s*;", text[end:])
                name = alias.group(1) if alias else name
            if name is not None:
                self.bodies.setdefault(name, (text[m.end():end - 1], align, text.count("\n", 0, m.start()) + 1))

    def __contains__(self, name: str) -> bool:
        return name in self.bodies

    def __iter__(self):
        return iter(self.bodies)

    def __getitem__(self, name: str) -> np.dtype:
        if name not in self.dtypes:
            body, align, line = self.bodies[name]
            self.dtypes[name] = _struct_dtype(body, self.macros, self, align, f"struct {name} (line {line})")
        return self.dtypes[name]


def _parse_param(text: str, macros: dict, structs: _Structs, kernel: str, line: int) -> Param:
    raw = _TOKEN.findall(text)
    where = f"kernel {kernel} (line {line}), parameter {text.strip()!r}"
    strided, nullable = STRIDED_MARKER in raw, NULLABLE_MARKER in raw
    tokens = _expand([t for t in raw if t not in MARKERS], macros)
    if "&" in tokens:
        raise KernelSourceError(f"{where}: references cannot be kernel parameters")
    if "[" in tokens:  # `float x[]` is a pointer
        tokens = tokens[:tokens.index("[")]
        tokens.insert(-1, "*")
    stars = [i for i, t in enumerate(tokens) if t == "*"]
    if not tokens or not _IDENT.match(tokens[-1]) or tokens[-1] in CTYPE_DTYPES or tokens[-1] in _QUALIFIERS:
        raise KernelSourceError(f"{where}: every parameter needs a name")
    name = tokens[-1]
    if len(stars) > 2:
        raise KernelSourceError(f"{where}: at most two levels of pointers (T** for pointer tables)")
    if stars:
        first = stars[0]
        const = "const" in tokens[:first] if len(stars) == 1 else "const" in tokens[first + 1:stars[1]]
    else:
        const = "const" in tokens
    ctype = _type_name([t for t in tokens[:-1] if t not in _QUALIFIERS and t != "*"])
    kind = {0: "scalar", 1: "pointer", 2: "pointer_table"}[len(stars)]
    if (strided or nullable) and kind == "scalar":
        raise KernelSourceError(f"{where}: {STRIDED_MARKER}/{NULLABLE_MARKER} mark pointer parameters only")
    if ctype in structs:
        if kind != "scalar":
            raise KernelSourceError(f"{where}: pointers to structs are not supported; pass the struct by value")
        return Param(name, ctype, "struct", None, struct_dtype=structs[ctype])
    if ctype not in CTYPE_DTYPES:
        known = sorted(CTYPE_DTYPES) + sorted(structs)
        raise KernelSourceError(f"{where}: type {ctype!r} is not one the loader knows; known: {known}")
    dtype = CTYPE_DTYPES[ctype]
    if kind == "scalar" and dtype is None:
        raise KernelSourceError(f"{where}: a void parameter has no value")
    return Param(name, ctype, kind, dtype, const=const and kind != "scalar", strided=strided, nullable=nullable)


def parse_signatures(source: str, defines: dict | None = None) -> dict[str, KernelSignature]:
    """The `extern "C" __global__` kernels of a source, by name, their types expanded with `defines` over the
    file's own default #defines (a prelude already in `source` counts like `defines`)."""
    text = strip_comments(source)
    macros = _object_macros(text)
    for name, value in normalize_defines(defines):
        macros[name] = _TOKEN.findall(value)
    for m in MARKERS:
        macros.pop(m, None)
    structs = _Structs(text, macros)
    blocks = _extern_c_blocks(text)
    # NOTE: with a prelude, line numbers count from the `#line 1` that starts the file's own text
    line_base = text.count("\n", 0, text.find("#line 1")) + 1 if "#line 1" in text else 0
    kernels: dict[str, KernelSignature] = {}
    for m in re.finditer(r"\b__global__\b", text):
        if not _is_extern_c(text, m.start(), blocks):
            continue
        pos, name = m.end(), None
        while name is None:
            tok = re.compile(r"\s*([A-Za-z_]\w*|\S)").match(text, pos)
            if tok is None:
                break
            word, pos = tok.group(1), tok.end()
            if word in _DECL_SPECIFIERS:
                continue
            if word in _DECL_ATTRIBUTES:
                paren = text.index("(", pos)
                pos = _matching(text, paren)
                continue
            name = word
        line = text.count("\n", 0, m.start()) + 1 - line_base
        paren = re.compile(r"\s*\(").match(text, pos)
        if name is None or not _IDENT.match(name) or paren is None:
            raise KernelSourceError(f"line {line}: cannot read the __global__ declaration after it")
        end = _matching(text, paren.end() - 1)
        params_text = text[paren.end():end - 1]
        if name in kernels:
            continue  # the same kernel under #if / #else: the first one
        parts, depth, cur = [], 0, ""
        for ch in params_text:
            if ch in "(<[":
                depth += 1
            elif ch in ")>]":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        parts = [p for p in parts if p.strip()]
        if parts == ["void"] or [p.strip() for p in parts] == ["void"]:
            parts = []
        params = tuple(_parse_param(p, macros, structs, name, line) for p in parts)
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise KernelSourceError(f"kernel {name} (line {line}): repeated parameter names {names}")
        kernels[name] = KernelSignature(name, params, line)
    return kernels


def ctype_of(dtype) -> str:
    """The C type name of a dtype (NumPy, CuPy or zigtensor), for -D defines: float16 -> '__half'."""
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = np.dtype(dtype).name
    name = {"bool_": "bool"}.get(name, name)
    try:
        return DTYPE_CTYPES[name]
    except KeyError:
        raise KernelSourceError(f"no C type for dtype {dtype!r}; supported: {sorted(DTYPE_CTYPES)}") from None
