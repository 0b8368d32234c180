"""Opt-in: SGLangEngine against a REAL SGLang server (or sglang-router). Skipped unless CRITLAB_SGLANG_URL is set.

    CRITLAB_SGLANG_URL=http://127.0.0.1:30000 python -m pytest -m sglang_real tests/test_sglang_real.py

Covers start-up (info), sampling with seeds and top-k logprobs, streaming, prefill-only scoring
(next_token_probs) against teacher-forced scoring (score_response), and JSON-schema constrained output.

Optional: CRITLAB_SGLANG_API_KEY, CRITLAB_SGLANG_MODEL_ID (overrides the id the server reports; sglang-router
0.3.2 proxies /get_model_info), CRITLAB_SGLANG_TOKENIZER (a local HF tokenizer directory),
CRITLAB_SGLANG_TOKENIZE_URL (a worker URL, behind a router: it also tells the context length and seed support).
Kept small: a few prompts, short outputs. The real router binary in front of stand-in workers runs in the
default suite (tests/test_sglang_router.py).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import pytest

from backend.engines.base import SampleParams
from backend.engines.sglang import SGLangEngine
from tests.streaming import drain

URL = os.environ.get("CRITLAB_SGLANG_URL")

pytestmark = [
    pytest.mark.sglang_real,
    pytest.mark.skipif(not URL, reason="CRITLAB_SGLANG_URL is not set: these opt-in tests need a running SGLang "
                                       "server (set CRITLAB_SGLANG_URL=http://host:port to run them)"),
]

CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
YES_NO = [{"role": "user", "content": "Is Paris the capital of France? Answer with Yes or No only."}]


@pytest.fixture(scope="module")
def engine() -> Iterator[SGLangEngine]:
    e = SGLangEngine(URL or "", model_id=os.environ.get("CRITLAB_SGLANG_MODEL_ID") or None,
                     tokenizer_path=os.environ.get("CRITLAB_SGLANG_TOKENIZER") or None,
                     tokenize_url=os.environ.get("CRITLAB_SGLANG_TOKENIZE_URL") or None, timeout=300.0)
    yield e
    e.close()


def test_info(engine: SGLangEngine) -> None:
    info = engine.info()
    assert info.engine == "sglang" and info.model_id and info.context_length > 0
    assert info.self_certainty == "topk_proxy"


def test_sampling(engine: SGLangEngine) -> None:
    params = SampleParams(temperature=0.7, top_p=0.95, max_tokens=24)
    out = engine.sample([CHAT, YES_NO], 2, params, top_logprobs=3, seeds=[[1, 2], [3, 4]])
    assert [[s.seed for s in row] for row in out] == [[1, 2], [3, 4]]
    for row in out:
        for s in row:
            assert s.finish_reason in ("stop", "length"), s.error
            assert s.text and s.prompt_tokens and s.tokens
            assert all(t.logprob <= 1e-6 and len(t.top) <= 3 for t in s.tokens if not math.isnan(t.logprob))
    if engine.info().seeds_honoured:
        again = engine.sample([CHAT, YES_NO], 2, params, top_logprobs=3, seeds=[[1, 2], [3, 4]])
        assert [[s.text for s in r] for r in again] == [[s.text for s in r] for r in out]


def test_streaming(engine: SGLangEngine) -> None:
    params = SampleParams(temperature=0.0, max_tokens=24, seed=1)
    pieces, final = drain(engine.stream(CHAT, params))
    assert pieces and all(pieces) and "".join(pieces).strip()
    assert final.text == "".join(pieces) and final.finish_reason in ("stop", "length")
    assert final.prompt_tokens == engine.count_tokens(CHAT)
    if engine.info().seeds_honoured:  # greedy is batch-invariant only under --enable-deterministic-inference
        [[sampled]] = engine.sample([CHAT], 1, params, top_logprobs=0, seeds=[[1]])
        assert sampled.text == final.text


def test_closing_a_stream_early_leaves_the_engine_usable(engine: SGLangEngine) -> None:
    stream = engine.stream(CHAT, SampleParams(temperature=0.7, max_tokens=64, seed=2))
    assert next(stream)
    stream.close()
    [p] = engine.next_token_probs([YES_NO], "", ["Yes", "No"])
    assert sum(p.values()) > 0


def test_prefill_only_scoring(engine: SGLangEngine) -> None:
    [p] = engine.next_token_probs([YES_NO], "", ["Yes", "No"])
    assert set(p) == {"Yes", "No"}
    assert all(0.0 <= v <= 1.0 for v in p.values()) and 0.0 < sum(p.values()) <= 1.0 + 1e-6

    tokens = engine.score_response(CHAT, "The capital of France is Paris.", top_logprobs=3)
    assert tokens and all(math.isfinite(t.logprob) and t.logprob <= 1e-6 for t in tokens)
    assert all(t.top and t.top[0].logprob >= t.logprob - 1e-4 for t in tokens)


def test_prefill_probabilities_agree_with_teacher_forcing(engine: SGLangEngine) -> None:
    """Both are raw log-softmax at the same position (prefill-only path vs prompt logprobs), so the
    probability of the first token of "Yes" as the reply is at most P(Yes), which sums every surface
    variant (" Yes", "yes", ...), and equal to it up to those variants and numerics."""
    [p] = engine.next_token_probs([YES_NO], "", ["Yes", "No"])
    first = engine.score_response(YES_NO, "Yes", top_logprobs=0)[0]
    assert math.exp(first.logprob) <= p["Yes"] + 2e-2
    # the answer after an assistant prefix is a different position, with a different distribution
    [after] = engine.next_token_probs([YES_NO], "The answer is", ["Yes", "No"])
    assert set(after) == {"Yes", "No"} and all(0.0 <= v <= 1.0 for v in after.values())


def test_greedy_sample_logprobs_match_teacher_forcing(engine: SGLangEngine) -> None:
    """At temperature 0 sampled-token logprobs are raw, so re-scoring the text teacher-forced gives the same
    tokens and (up to decode-vs-prefill numerics) the same logprobs: the alignment scoring relies on."""
    [[s]] = engine.sample([CHAT], 1, SampleParams(temperature=0.0, max_tokens=16), top_logprobs=2, seeds=[[5]])
    forced = engine.score_response(CHAT, s.text, top_logprobs=2)
    if [t.token_id for t in forced] != [t.token_id for t in s.tokens][:len(forced)]:
        pytest.skip("the sampled text re-tokenizes differently; nothing to compare token by token")
    for sampled, scored in zip(s.tokens, forced):
        if math.isfinite(sampled.logprob):
            assert abs(sampled.logprob - scored.logprob) < 0.3, (sampled, scored)


def test_json_schema_output(engine: SGLangEngine) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "confident": {"type": "boolean"}},
              "required": ["answer", "confident"], "additionalProperties": False}
    chat = [{"role": "user", "content": "What is the capital of France? Reply as JSON with keys answer and "
                                        "confident."}]
    out = engine.sample([chat], 2, SampleParams(temperature=0.7, max_tokens=96), json_schema=schema)
    for s in out[0]:
        assert s.finish_reason == "stop", f"{s.finish_reason}: {s.text!r}"
        value = json.loads(s.text)
        assert set(value) == {"answer", "confident"}
        assert isinstance(value["answer"], str) and isinstance(value["confident"], bool)


def test_json_schema_enum_and_array(engine: SGLangEngine) -> None:
    # enum, arrays and integers are enforced by every grammar backend (reference §8.4 lists what is not)
    schema = {"type": "object", "properties": {
        "verdict": {"type": "string", "enum": ["A", "B", "tie"]},
        "scores": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}},
        "required": ["verdict", "scores"], "additionalProperties": False}
    chat = [{"role": "user", "content": "Which is better, A: 'Paris is in France' or B: 'Paris is in Spain'? "
                                        "Reply as JSON with a verdict and one to three integer scores."}]
    [[s]] = engine.sample([chat], 1, SampleParams(temperature=0.0, max_tokens=64), json_schema=schema, seeds=[[7]])
    assert s.finish_reason == "stop", f"{s.finish_reason}: {s.text!r}"
    value = json.loads(s.text)
    assert value["verdict"] in ("A", "B", "tie")
    assert 1 <= len(value["scores"]) <= 3 and all(isinstance(x, int) for x in value["scores"])
