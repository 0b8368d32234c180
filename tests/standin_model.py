"""The stand-in SGLang server's toy "model" (tests/standin_sglang.py): a fixed vocabulary tokenized by greedy
longest match, a ChatML-like chat template, and logits that are a deterministic pseudo-random function of the
last few tokens, so raw logprobs are the same everywhere (sampling, prefill-only scoring, teacher forcing)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np


# ---------------------------------------------------------------------------------------------------------
# Toy tokenizer and model

SPECIAL_TOKENS = ["<pad>", "<bos>", "<|im_start|>", "<|im_end|>", "<unk>"]
PAD_ID, BOS_ID, IM_START_ID, EOS_ID, UNK_ID = range(5)
_WORDS = ["Yes", "No", "yes", "no", "True", "False", "A", "B", "C", "D", "the", "answer", "is", "a", "of",
          "and", "to", "in", "it", "that", "this", "I", "you", "Hello", "world", "good", "bad", "correct",
          "wrong", "system", "user", "assistant", "because", "score", "response", "question", "think",
          "value", "name", "number", "list", "true", "false", "null", "Paris", "France", "capital"]
_CHARS = ["\n"] + [chr(c) for c in range(32, 127)]


def _build_vocab() -> list[str]:
    vocab: list[str] = []
    for piece in SPECIAL_TOKENS + _CHARS + _WORDS + [" " + w for w in _WORDS]:
        if piece not in vocab:
            vocab.append(piece)
    return vocab


VOCAB: list[str] = _build_vocab()
VOCAB_SIZE = len(VOCAB)
_PIECE_TO_ID = {p: i for i, p in enumerate(VOCAB)}
_MAX_PIECE = max(len(p) for p in VOCAB)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_TEMPLATE = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(CHAT_TEMPLATE)


def encode(text: str) -> list[int]:
    """Greedy longest match over VOCAB (special-token strings included); unknown characters -> <unk>."""
    ids: list[int] = []
    i = 0
    while i < len(text):
        for length in range(min(_MAX_PIECE, len(text) - i), 0, -1):
            tid = _PIECE_TO_ID.get(text[i:i + length])
            if tid is not None:
                ids.append(tid)
                i += length
                break
        else:
            ids.append(UNK_ID)
            i += 1
    return ids


def decode(ids: list[int], skip_special_tokens: bool = True) -> str:
    return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i < len(SPECIAL_TOKENS)))


def render_chat(messages: list[dict], add_generation_prompt: bool = True) -> str:
    return _TEMPLATE.render(messages=messages, add_generation_prompt=add_generation_prompt,
                            bos_token=VOCAB[BOS_ID], eos_token=VOCAB[EOS_ID])


def chat_ids(messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    # The template already carries <bos>, so (like SGLang's Jinja path) no special tokens are added again.
    return encode(render_chat(messages, add_generation_prompt))


def _stable_hash(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def logits_after(prefix: list[int]) -> np.ndarray:
    """The toy model: next-token logits as a pure function of the last three tokens and the length."""
    rng = np.random.default_rng(_stable_hash(tuple(prefix[-3:]), len(prefix)))
    logits = rng.normal(0.0, 2.0, VOCAB_SIZE)
    logits[[PAD_ID, BOS_ID, IM_START_ID, UNK_ID]] = -30.0  # finite: JSON has no -inf
    logits[EOS_ID] = 1.5
    return logits


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def raw_logprobs_after(prefix: list[int]) -> np.ndarray:
    """What a real server returns on the prefill-only path and for prompt tokens: plain log_softmax."""
    return log_softmax(logits_after(prefix))


def write_hf_tokenizer_dir(path: str | Path) -> Path:
    """Write the toy tokenizer as a Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json
    with the chat template, config.json). Needs the `tokenizers` package. Its ids equal `encode()`."""
    from tokenizers import AddedToken, Regex, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(WordLevel(vocab=dict(_PIECE_TO_ID), unk_token="<unk>"))
    # Oniguruma alternation is leftmost-first, so listing pieces longest first reproduces greedy longest match.
    pieces = sorted((p for p in VOCAB if p not in SPECIAL_TOKENS), key=len, reverse=True)
    tok.pre_tokenizer = Split(Regex("|".join(_onig_escape(p) for p in pieces)), behavior="isolated")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": CHAT_TEMPLATE, "bos_token": VOCAB[BOS_ID], "eos_token": VOCAB[EOS_ID],
        "unk_token": VOCAB[UNK_ID], "pad_token": VOCAB[PAD_ID], "model_max_length": 4096}))
    (path / "config.json").write_text(json.dumps({"vocab_size": VOCAB_SIZE, "max_position_embeddings": 4096}))
    return path


def _onig_escape(piece: str) -> str:
    out = []
    for ch in piece:
        if ch == "\n":
            out.append("\\n")
        elif ch in "\\^$.|?*+()[]{}-/#& ":
            out.append("\\" + ch if ch != " " else "\\x20")
        else:
            out.append(ch)
    return "".join(out)


