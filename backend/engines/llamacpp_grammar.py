"""Grammar-constrained token picking for the embedded engine: the nucleus first, the grammar second.

llama.cpp's grammar sampler checks every candidate it is handed against the grammar's stacks. Handed
the whole 49,152-token vocabulary of SmolLM2 at each step, it took ~11 ms a token on the 2-core
machine, a third of a generation step. Here the model's own pick is drawn first, from the truncated
distribution (temperature, then top-p), and only that one token is checked. When the grammar forbids
it, the grammar is applied to the nucleus (a few to a few hundred tokens) and the pick drawn again from
what it allows; only when it allows none of the nucleus is the whole vocabulary checked, as before.

What this samples: the distribution temperature → top-p → grammar → draw, exactly. Drawing from the
nucleus and redrawing from its allowed part on a rejection gives each allowed token its share of the
allowed nucleus (q(y) + (1 - q(allowed)) · q(y) / q(allowed) = q(y) / q(allowed)). The previous chain
applied the grammar before top-p (the nucleus taken from the allowed tokens only); the two differ only
when top-p < 1 and the grammar forbids part of the nucleus. Greedy decoding picks the same token
either way. Logprobs are not affected: they come from the raw logits, before any of this.
"""

from __future__ import annotations

import ctypes

import llama_cpp.llama_cpp as llama_c
import numpy as np
from llama_cpp import LlamaGrammar

from backend.engines.base import EngineError, SampleParams
from backend.engines.llamacpp_util import llama_seed

_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_c.llama_token_data)


class GrammarPicker:
    """Picks the next token under a GBNF grammar, one generation long (the grammar state advances with
    each pick). Counts how often the model's own pick was allowed (`fast`) and how often the whole
    vocabulary had to be checked (`full`), for tests and benchmarks."""

    def __init__(self, vocab: ctypes.c_void_p, grammar: LlamaGrammar, params: SampleParams, seed: int,
                 n_vocab: int) -> None:
        self._grammar = llama_c.llama_sampler_init_grammar(vocab, grammar._grammar.encode("utf-8"),
                                                          grammar._root.encode("utf-8"))
        if not self._grammar:
            raise EngineError("llama.cpp could not build a sampler from the JSON schema's grammar")
        self._truncate = None
        if params.temperature > 0:
            # Temperature before top-p, as HF/vLLM/SGLang do (and as the unconstrained chain does).
            self._truncate = llama_c.llama_sampler_chain_init(llama_c.llama_sampler_chain_default_params())
            llama_c.llama_sampler_chain_add(self._truncate, llama_c.llama_sampler_init_temp(params.temperature))
            if params.top_p < 1.0:
                llama_c.llama_sampler_chain_add(self._truncate, llama_c.llama_sampler_init_top_p(params.top_p, 1))
            self._draw = llama_c.llama_sampler_init_dist(llama_seed(seed))
        else:
            self._draw = llama_c.llama_sampler_init_greedy()
        self._n = n_vocab
        self._buf = (llama_c.llama_token_data * n_vocab)()
        self._view = np.frombuffer(self._buf, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._arr = llama_c.llama_token_data_array(
            data=ctypes.cast(self._buf, llama_c.llama_token_data_p), size=n_vocab, selected=-1, sorted=False)
        self._one = (llama_c.llama_token_data * 1)()
        self._one_arr = llama_c.llama_token_data_array(
            data=ctypes.cast(self._one, llama_c.llama_token_data_p), size=1, selected=-1, sorted=False)
        self.fast = self.nucleus = self.full = 0

    def pick(self, logits: np.ndarray, vocab: ctypes.c_void_p) -> int:
        """The next token from one position's raw logits (not modified)."""
        self._load(logits)
        if self._truncate is not None:
            llama_c.llama_sampler_apply(self._truncate, ctypes.byref(self._arr))
        tok = self._draw_one()
        if self._allowed(tok):
            self.fast += 1
        else:
            tok = None
            if self._truncate is not None:  # the nucleus, less what the grammar forbids
                self._arr.selected = -1
                llama_c.llama_sampler_apply(self._grammar, ctypes.byref(self._arr))
                # Still in order, but the first may now be -inf, and a sorted array's draw takes its
                # first logit as the maximum.
                self._arr.sorted = False
                if np.isfinite(self._current()["logit"]).any():
                    tok = self._draw_one()
                    self.nucleus += 1
            if tok is None:  # nothing allowed in the nucleus (or greedy): the whole vocabulary
                self._load(logits)
                llama_c.llama_sampler_apply(self._grammar, ctypes.byref(self._arr))
                if self._truncate is not None:
                    llama_c.llama_sampler_apply(self._truncate, ctypes.byref(self._arr))
                tok = self._draw_one()
                self.full += 1
        if not llama_c.llama_vocab_is_eog(vocab, tok):  # generation ends at an end token: nothing to advance
            llama_c.llama_sampler_accept(self._grammar, tok)
        return tok

    def close(self) -> None:
        for s in (self._grammar, self._truncate, self._draw):
            if s:
                llama_c.llama_sampler_free(s)
        self._grammar = self._truncate = self._draw = None

    def _load(self, logits: np.ndarray) -> None:
        self._arr.data = ctypes.cast(self._buf, llama_c.llama_token_data_p)
        self._arr.size, self._arr.selected, self._arr.sorted = self._n, -1, False
        self._view["id"] = self._ids
        self._view["logit"] = logits
        self._view["p"] = 0.0

    def _current(self) -> np.ndarray:
        """The candidates the array now holds (samplers shrink it and may re-point it)."""
        n = self._arr.size
        raw = (ctypes.c_char * (n * _TOKEN_DATA.itemsize)).from_address(ctypes.addressof(self._arr.data.contents))
        return np.frombuffer(raw, dtype=_TOKEN_DATA)

    def _draw_one(self) -> int:
        llama_c.llama_sampler_apply(self._draw, ctypes.byref(self._arr))
        return int(self._arr.data[self._arr.selected].id)

    def _allowed(self, tok: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = tok, 0.0, 0.0
        self._one_arr.size, self._one_arr.selected, self._one_arr.sorted = 1, -1, False
        llama_c.llama_sampler_apply(self._grammar, ctypes.byref(self._one_arr))
        return bool(np.isfinite(self._one[0].logit))
