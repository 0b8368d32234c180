"""Chat templates rendered the way transformers' `apply_chat_template(..., add_generation_prompt=True)` does,
without transformers: the export's `--style standard` prompts and the SGLang client's local tokenizer
(backend/engines/sglang_tokenizers.py) share the one sandboxed environment here (`sandboxed_env`).

A template comes from a GGUF file (its `tokenizer.chat_template` metadata, read from the header without
loading weights) or a Hugging Face tokenizer directory (`tokenizer_config.json`'s `chat_template`, or
`chat_template.jinja`). It is rendered with jinja2's sandbox and the settings transformers uses
(trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `tojson`, `strftime_now`).
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from pathlib import Path
from collections.abc import Callable, Collection
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_WANTED = ("tokenizer.chat_template", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
           "tokenizer.ggml.tokens")


_JINJA_SUFFIXES = (".j2", ".jinja", ".jinja2")


class ChatTemplate:
    def __init__(self, template: str, special: dict[str, str | None], source: str):
        self.source = source
        self.text = template
        self.special = {k: v for k, v in special.items() if v is not None}
        self._template = sandboxed_env().from_string(template)

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         tools=None, documents=None, **self.special)
        except Exception as e:  # template bugs / raise_exception() inside the template
            raise ValueError(f"the chat template of {self.source} failed to render: {e}") from e


def load_chat_template(path: str | Path) -> ChatTemplate:
    """The chat template of a GGUF file, a Hugging Face tokenizer directory or a Jinja file (.j2, .jinja)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _from_hf_dir(p)
    if not p.is_file():
        raise ValueError(f"chat template source {p} does not exist: give a GGUF file, a tokenizer directory or a "
                         "Jinja template file")
    if p.suffix in _JINJA_SUFFIXES:
        try:
            return ChatTemplate(p.read_text(encoding="utf-8"), {}, str(p))
        except UnicodeDecodeError as e:
            raise ValueError(f"{p} is not a UTF-8 text file: {e}") from e
    with open(p, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError(f"{p} is neither a GGUF file, a tokenizer directory nor a Jinja template "
                             f"({', '.join(_JINJA_SUFFIXES)})")
        meta = read_gguf_metadata(f, _WANTED)
    template = meta.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template:
        raise ValueError(f"{p} has no tokenizer.chat_template")
    tokens = meta.get("tokenizer.ggml.tokens") or {}

    def tok(key: str) -> str | None:
        i = meta.get(key)
        return tokens.get(i) if isinstance(i, int) else None

    return ChatTemplate(template, {"bos_token": tok("tokenizer.ggml.bos_token_id"),
                                   "eos_token": tok("tokenizer.ggml.eos_token_id")}, str(p))


def read_gguf_metadata(f: BinaryIO, wanted: Collection[str] | Callable[[str], bool]) -> dict[str, Any]:
    """The `wanted` keys of a GGUF header (read after the magic): a collection of keys, or a test of a key.
    `tokenizer.ggml.tokens` comes back as {index: text} for the token ids among the wanted `*_token_id`
    keys only (the vocabulary is skipped)."""
    want = wanted if callable(wanted) else wanted.__contains__
    version, = struct.unpack("<I", f.read(4))
    if version < 2:
        raise ValueError(f"GGUF version {version} is not supported")
    _n_tensors, n_kv = struct.unpack("<QQ", f.read(16))
    out: dict[str, Any] = {}
    tokens_at: tuple[int, int, int] | None = None  # file offset of the items, item type, count
    for _ in range(n_kv):
        key = _string(f)
        vtype, = struct.unpack("<I", f.read(4))
        if key == "tokenizer.ggml.tokens" and want(key) and vtype == 9:
            etype, n = struct.unpack("<IQ", f.read(12))
            tokens_at = (f.tell(), etype, n)
            for _ in range(n):
                _skip(f, etype)
        elif want(key):
            out[key] = _value(f, vtype)
        else:
            _skip(f, vtype)
    if tokens_at is not None:
        ids = {v for k, v in out.items() if k.endswith("_token_id") and isinstance(v, int)}
        offset, etype, n = tokens_at
        f.seek(offset)
        toks: dict[int, str] = {}
        for i in range(min(n, max(ids) + 1) if ids and etype == 8 else 0):
            s = _string(f)
            if i in ids:
                toks[i] = s
        out["tokenizer.ggml.tokens"] = toks
    return out


def _string(f: BinaryIO) -> str:
    n, = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if vtype == 8:
        return _string(f)
    if vtype == 9:
        etype, n = struct.unpack("<IQ", f.read(12))
        return [_value(f, etype) for _ in range(n)]
    raise ValueError(f"unknown GGUF value type {vtype}")


def _skip(f: BinaryIO, vtype: int) -> None:
    if vtype in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[vtype]), 1)
    elif vtype == 8:
        n, = struct.unpack("<Q", f.read(8))
        f.seek(n, 1)
    elif vtype == 9:
        etype, n = struct.unpack("<IQ", f.read(12))
        if etype in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[etype]), 1)
        else:
            for _ in range(n):
                _skip(f, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def _from_hf_dir(path: Path) -> ChatTemplate:
    config: dict[str, Any] = {}
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        try:
            config = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{cfg}: invalid JSON: {e}") from e
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        raise ValueError(f"{path}: no chat_template in tokenizer_config.json or chat_template.jinja")
    special = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        special[key] = value.get("content") if isinstance(value, dict) else value
    return ChatTemplate(template, special, str(path))


def sandboxed_env() -> Any:
    """jinja2's immutable sandbox with the settings transformers renders chat templates with: model files
    are untrusted, so a template can read its arguments but not reach Python objects."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env

