"""Grammar-constrained picking on the embedded engine (backend/engines/llamacpp_grammar.py): the model's
own pick is checked first, the grammar applied to the nucleus or the whole vocabulary only on a rejection.
Checked against llama.cpp's grammar sampler run over the whole vocabulary, at the same grammar state."""

from __future__ import annotations

import ctypes
import json
from typing import Any

import llama_cpp.llama_cpp as llama_c
import numpy as np
import pytest

from backend.engines import llamacpp_grammar
from backend.engines.base import SampleParams
from backend.engines.llamacpp_grammar import GrammarPicker

pytestmark = pytest.mark.model

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                           "why": {"type": "string"}, "n": {"type": "integer"}},
          "required": ["answer", "why", "n"], "additionalProperties": False}


class Reference:
    """llama.cpp's grammar sampler over the whole vocabulary: which tokens the grammar allows now."""

    def __init__(self, engine: Any) -> None:
        g = engine._grammar(SCHEMA)
        self.vocab, self.n = engine._vocab, engine._n_vocab
        self.smpl = llama_c.llama_sampler_init_grammar(self.vocab, g._grammar.encode(), g._root.encode())
        self.buf = (llama_c.llama_token_data * self.n)()
        self.view = np.frombuffer(self.buf, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

    def allowed(self) -> np.ndarray:
        self.view["id"], self.view["logit"], self.view["p"] = np.arange(self.n), 0.0, 0.0
        arr = llama_c.llama_token_data_array(data=ctypes.cast(self.buf, llama_c.llama_token_data_p), size=self.n,
                                             selected=-1, sorted=False)
        llama_c.llama_sampler_apply(self.smpl, ctypes.byref(arr))
        return np.isfinite(self.view["logit"])

    def accept(self, tok: int) -> None:
        if not llama_c.llama_vocab_is_eog(self.vocab, tok):
            llama_c.llama_sampler_accept(self.smpl, tok)

    def close(self) -> None:
        llama_c.llama_sampler_free(self.smpl)


def _logits(rng: np.random.Generator, n: int) -> np.ndarray:
    # Peaked like a model's: a few tokens well above a broad tail.
    x = rng.normal(0.0, 2.0, n).astype(np.float32)
    x[rng.choice(n, 5, replace=False)] += 12.0
    return x


def test_greedy_picks_what_the_whole_vocabulary_grammar_picks(embedded_engine: Any) -> None:
    eng, rng = embedded_engine, np.random.default_rng(0)
    ref = Reference(eng)
    picker = GrammarPicker(eng._vocab, eng._grammar(SCHEMA), SampleParams(temperature=0.0), 0, eng._n_vocab)
    try:
        for _ in range(60):
            logits = _logits(rng, eng._n_vocab)
            allowed = ref.allowed()
            want = int(np.argmax(np.where(allowed, logits, -np.inf)))
            got = picker.pick(logits, eng._vocab)
            assert got == want
            ref.accept(got)
            if llama_c.llama_vocab_is_eog(eng._vocab, got):
                break
        assert picker.fast > 0 and picker.full > 0  # both paths were taken
    finally:
        picker.close()
        ref.close()


def test_sampled_tokens_are_allowed_and_from_the_nucleus(embedded_engine: Any) -> None:
    eng, rng = embedded_engine, np.random.default_rng(1)
    temp, top_p = 0.9, 0.9
    ref = Reference(eng)
    picker = GrammarPicker(eng._vocab, eng._grammar(SCHEMA), SampleParams(temperature=temp, top_p=top_p), 7,
                           eng._n_vocab)
    try:
        for _ in range(80):
            logits = _logits(rng, eng._n_vocab)
            before = logits.copy()
            allowed = ref.allowed()
            tok = picker.pick(logits, eng._vocab)
            assert np.array_equal(logits, before)  # the raw logits (what logprobs come from) are untouched
            assert allowed[tok]
            # temperature, then the top-p nucleus of the whole distribution, then the grammar
            order = np.argsort(-before, kind="stable")
            p = np.exp((before[order] - before[order[0]]) / temp)
            p /= p.sum()
            nucleus = order[: int(np.searchsorted(np.cumsum(p), top_p)) + 1]
            if allowed[nucleus].any():
                assert tok in set(nucleus.tolist())
            ref.accept(tok)
            if llama_c.llama_vocab_is_eog(eng._vocab, tok):
                break
        assert picker.fast > 0 and picker.nucleus + picker.full > 0  # rejections happened
    finally:
        picker.close()
        ref.close()


def test_hot_constrained_samples_are_valid_json_and_use_the_rejection_path(
        embedded_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    counts: list[tuple[int, int, int]] = []
    close = GrammarPicker.close

    def counting_close(self: GrammarPicker) -> None:
        counts.append((self.fast, self.nucleus, self.full))
        close(self)

    monkeypatch.setattr(llamacpp_grammar.GrammarPicker, "close", counting_close)
    params = SampleParams(temperature=1.3, top_p=0.98, max_tokens=64)
    rows = embedded_engine.sample([[{"role": "user", "content": "Is the sky green? Say why."}]], 4, params,
                                  json_schema=SCHEMA, seeds=[[1, 2, 3, 4]])[0]
    for s in rows:
        if s.finish_reason == "stop":
            obj = json.loads(s.text)
            assert set(obj) == {"answer", "why", "n"} and obj["answer"] in ("yes", "no")
            assert isinstance(obj["n"], int)
        else:  # cut off: what was written is still a prefix the grammar allowed
            assert s.finish_reason == "length" and s.text.startswith("{")
        assert all(t.logprob <= 0 for t in s.tokens)
    assert len(counts) == 4
    assert sum(c[1] + c[2] for c in counts) > 0
