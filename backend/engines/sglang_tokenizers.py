"""Chat template -> input_ids for the SGLang client: locally from an HF tokenizer directory, or by the
server's `/tokenize` (SGLang >= 0.5.23).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from backend.engines.base import Chat, EngineError
from backend.engines.chat_template import sandboxed_env
from backend.engines.sglang_http import Http, SGLangHTTPError


class Tokenizer(Protocol):
    def chat_ids(self, chat: Chat) -> list[int]: ...

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Plain text without special tokens."""
        ...


class LocalTokenizer:
    """An HF tokenizer directory: `tokenizer.json` through `tokenizers`, the chat template through jinja2
    rendered the way transformers' apply_chat_template does (sandboxed, trim/lstrip blocks)."""

    def __init__(self, path: str | Path, template_kwargs: dict[str, Any]) -> None:
        path = Path(path).expanduser()
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EngineError("tokenizer_path needs the `tokenizers` package: pip install tokenizers") from exc
        if not (path / "tokenizer.json").is_file():
            raise EngineError(f"no tokenizer.json in {path} (tokenizer_path must be a Hugging Face tokenizer "
                              "directory, e.g. the model directory)")
        try:
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the Rust side raises plain Exception
            raise EngineError(f"{path / 'tokenizer.json'}: cannot load: {exc}") from exc
        config = _read_json(path / "tokenizer_config.json")
        model_config = _read_json(path / "config.json")
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default") or next(iter(named.values()), None)
        if not template and (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text()
        if not template:
            raise EngineError(f"{path}: no chat_template in tokenizer_config.json or chat_template.jinja")
        self.template = sandboxed_env().from_string(template)
        self.special: dict[str, Any] = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
            value = config.get(key)
            self.special[key] = value.get("content") if isinstance(value, dict) else value
        self.template_kwargs = template_kwargs
        self.vocab_size: int = int(model_config.get("vocab_size") or self.tokenizer.get_vocab_size(True))
        # The model's own limit, a last resort when no server tells its --context-length; never
        # tokenizer_config's model_max_length (a tokenizer default, often a huge sentinel).
        ctx = model_config.get("max_position_embeddings")
        self.max_position_embeddings: int | None = int(ctx) if ctx else None

    def render(self, chat: Chat) -> str:
        try:
            return self.template.render(messages=chat, add_generation_prompt=True, tools=None, documents=None,
                                        **self.special, **self.template_kwargs)
        except Exception as exc:  # template bugs / raise_exception() in the template
            raise EngineError(f"chat template failed to render: {exc}") from exc

    def chat_ids(self, chat: Chat) -> list[int]:
        # Templates carry their own BOS etc., so nothing is added (as transformers does with tokenize=True).
        return self.tokenizer.encode(self.render(chat), add_special_tokens=False).ids

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise EngineError(f"{path}: invalid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


class RemoteTokenizer:
    """The server's `/tokenize`: `messages` renders the server's own chat template (0.5.23+)."""

    def __init__(self, http: Http, base_url: str, template_kwargs: dict[str, Any]) -> None:
        self.http = http
        self.url = f"{base_url}/tokenize"
        self.template_kwargs = template_kwargs

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.http.post_json(self.url, "tokenize", body)
        except SGLangHTTPError as exc:
            if exc.status == 404:
                raise EngineError(
                    f"{self.url} does not exist (404). sglang-router does not route /tokenize, and SGLang "
                    "< 0.5.4 has none. Give a local tokenizer (tokenizer_path / --sglang-tokenizer: a Hugging "
                    "Face tokenizer directory of the served model) or a worker URL to tokenize on "
                    "(tokenize_url / --sglang-tokenize-url).") from exc
            if exc.status in (400, 422) and "messages" in body:
                raise EngineError(
                    f"{self.url} rejected chat `messages` ({exc.server_message}): SGLang before 0.5.23 cannot "
                    "render the chat template for /tokenize, and 0.5.23 also refuses to when the server runs a "
                    "built-in --chat-template name or a model with its own chat encoding (e.g. DeepSeek-V3.2). "
                    "Give a local tokenizer instead (tokenizer_path / --sglang-tokenizer).") from exc
            raise
        if not isinstance(out, dict) or "tokens" not in out:
            raise EngineError(f"{self.url}: unexpected answer {str(out)[:200]}")
        return out

    def chat_ids(self, chat: Chat) -> list[int]:
        body: dict[str, Any] = {"messages": chat, "add_generation_prompt": True}
        if self.template_kwargs:
            body["chat_template_kwargs"] = self.template_kwargs
        tokens = self._post(body)["tokens"]
        if tokens and isinstance(tokens[0], list):
            tokens = tokens[0]
        return [int(t) for t in tokens]

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        tokens = self._post({"prompt": list(texts), "add_special_tokens": False})["tokens"]
        return [[int(t) for t in row] for row in tokens]
