"""Tiny llama-architecture GGUF files, built at test time with the `gguf` package.

Random weights (2 layers, width 64) and a byte-level BPE ("gpt2") vocabulary of a few hundred tokens:
the 256 byte symbols, single tokens for every answer candidate the methods ask about (Yes/No in three
cases, A-D, 0-10, each also with a leading space) and the special tokens of the file's chat template.
The output is gibberish but llama.cpp loads, tokenizes, samples and scores with it in milliseconds, so
the engine's template, context, identity and candidate handling can be tested on files that are not the
bundled SmolLM2.

Three flavours:
- "chatml": ChatML template (`<|im_start|>` ... `<|im_end|>`), no BOS.
- "llama3": a Llama-3-style template (`<|begin_of_text|>`, `<|start_header_id|>`, `<|eot_id|>`) that
  emits the BOS itself while the tokenizer also asks for one (so a doubled BOS would show).
- "bare": no chat template, no upper-case letters and no digits in the vocabulary (so no token starts
  "Yes", "A" or "7"), for the engine's clear errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

Flavour = Literal["chatml", "llama3", "bare"]

TRAINED_CTX = 16384  # above the engine's default cap, so the cap shows
N_EMBD, N_LAYER, N_HEAD, N_FF = 64, 2, 4, 128

CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>"]
BARE_SPECIALS = ["</s>"]

# Every candidate the methods read (backend/methods: checklist Yes/No, p_true A/B, pairwise A/B/C,
# judge_score 0-9, select_usc 0..n-1), whole words in the case forms the engine sums.
CANDIDATE_WORDS = ["Yes", "yes", "YES", "No", "no", "NO", "A", "B", "C", "D", "10",
                   *[str(d) for d in range(10)]]


def _byte_symbols() -> list[str]:
    """GPT-2's reversible byte → printable character table (byte b is symbol i of the result)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = 0
    out = []
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _vocab(flavour: Flavour) -> tuple[list[str], list[int], list[str], list[str]]:
    """(tokens, token types, merges, specials) of one flavour."""
    symbols = _byte_symbols()
    space = symbols[ord(" ")]
    if flavour == "bare":  # no upper-case letters or digits at all: llama.cpp drops what it cannot encode
        symbols = [s for b, s in enumerate(symbols) if not (chr(b).isupper() or chr(b).isdigit())]
        words = ["the", "and"]  # llama.cpp refuses a BPE vocabulary without merges
        specials = BARE_SPECIALS
    else:
        words = CANDIDATE_WORDS
        specials = CHATML_SPECIALS if flavour == "chatml" else LLAMA3_SPECIALS
    tokens, merges = list(symbols), []

    def add(tok: str) -> None:
        if tok not in tokens:
            tokens.append(tok)

    # A word is built left to right (W, Wo, Wor ...), then joined to the space symbol as one last merge,
    # so " Yes" becomes [Ġ][Yes] -> [ĠYes] whatever else shares its letters.
    for w in words:
        for i in range(1, len(w)):
            merge = f"{w[:i]} {w[i]}"
            if merge not in merges:
                merges.append(merge)
            add(w[:i + 1])
    for w in words:
        merges.append(f"{space} {w}")
        add(space + w)
    types = [int(TokenType.NORMAL)] * len(tokens) + [int(TokenType.CONTROL)] * len(specials)
    return tokens + specials, types, merges, specials


def build(path: Path, flavour: Flavour, *, name: str | None = None, seed: int = 0) -> Path:
    """Write one tiny GGUF to `path` and return it."""
    tokens, types, merges, specials = _vocab(flavour)
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    w.add_name(name or f"Tiny {flavour.capitalize()} Test")
    w.add_file_type(int(LlamaFileType.ALL_F32))
    w.add_context_length(TRAINED_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = {t: i for i, t in enumerate(tokens)}
    if flavour == "chatml":
        w.add_eos_token_id(ids["<|im_end|>"])
        w.add_bos_token_id(ids["<|endoftext|>"])
        w.add_add_bos_token(False)
        w.add_chat_template(CHATML_TEMPLATE)
    elif flavour == "llama3":
        w.add_bos_token_id(ids["<|begin_of_text|>"])
        w.add_eos_token_id(ids["<|eot_id|>"])
        w.add_add_bos_token(True)
        w.add_chat_template(LLAMA3_TEMPLATE)
    else:
        w.add_eos_token_id(ids[specials[0]])
        w.add_add_bos_token(False)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    # numpy shapes are GGUF dimensions reversed: token_embd is (n_vocab, n_embd) here, {n_embd, n_vocab} there.
    w.add_tensor("token_embd.weight", rand(len(tokens), N_EMBD))
    for b in range(N_LAYER):
        w.add_tensor(f"blk.{b}.attn_norm.weight", ones)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{b}.{t}.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{b}.ffn_gate.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"blk.{b}.ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"blk.{b}.ffn_down.weight", rand(N_EMBD, N_FF))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", rand(len(tokens), N_EMBD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
