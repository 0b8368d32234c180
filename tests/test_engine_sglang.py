"""SGLangEngine against the SGLang stand-in (tests/standin_sglang.py): request shapes, parsing, retries,
auth, router mode. The stand-in's toy model is deterministic, so logprobs are checked exactly."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.standin_sglang as si
from backend.engines.base import Engine, EngineError, SampleParams, logprob_mode_for
from backend.engines.sglang import (KEEPALIVE_EXPIRY_S, SGLangEngine, parse_finish_reason,
                                    parse_token_logprobs)
from tests.streaming import drain

CHAT = [{"role": "user", "content": "Is Paris the capital of France?"}]
CHAT2 = [{"role": "system", "content": "Answer yes or no."}, {"role": "user", "content": "Is the answer good?"}]
CHAT3 = [{"role": "user", "content": "Hello world"}]
FAST = {"backoff": 0.001, "timeout": 10.0}


_control = httpx.Client()  # one client for the stand-in's control routes: building one costs ~40 ms (TLS setup)


class Standin:
    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url, self.stop = url, stop

    def requests(self, path: str | None = "/generate") -> list[dict[str, Any]]:
        return _control.get(f"{self.url}/_standin/requests", params={"path": path} if path else {}).json()

    def configure(self, **options: Any) -> None:
        _control.post(f"{self.url}/_standin/config", json=options).raise_for_status()

    def reset(self) -> None:
        _control.post(f"{self.url}/_standin/reset").raise_for_status()

    def max_inflight(self) -> int:
        return _control.get(f"{self.url}/_standin/stats").json()["max_inflight"]


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRITLAB_SGLANG_API_KEY", raising=False)


@pytest.fixture(scope="session")
def _standin_pool() -> Iterator[list[Standin]]:
    pool: list[Standin] = []
    yield pool
    for s in pool:
        s.stop()


@pytest.fixture
def standin(_standin_pool: list[Standin]) -> Callable[..., Standin]:
    """make(**options) -> a stand-in with those options. Servers are reused across tests (reset to their
    initial options and emptied first) because starting and stopping uvicorn costs ~0.2 s each."""
    used = 0

    def make(**options: Any) -> Standin:
        nonlocal used
        if used == len(_standin_pool):
            _standin_pool.append(Standin(*si.start_standin()))
        s = _standin_pool[used]
        used += 1
        s.reset()
        if options:
            s.configure(**options)
        return s

    return make


@pytest.fixture
def engine() -> Iterator[Callable[..., SGLangEngine]]:
    engines: list[SGLangEngine] = []

    def make(url: str, **kw: Any) -> SGLangEngine:
        engines.append(SGLangEngine(url, **{**FAST, **kw}))
        return engines[-1]

    yield make
    for e in engines:
        e.close()


@pytest.fixture
def server(standin: Callable[..., Standin]) -> Standin:
    return standin()


def batch_requests(s: Standin) -> list[dict[str, Any]]:
    """The /generate bodies that are not prefix warm-ups."""
    return [r["json"] for r in s.requests() if r["json"]["sampling_params"] != {"max_new_tokens": 0}]


# --- start-up and info ---------------------------------------------------------------------------------------

def test_info_from_server(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, vocab_size=321)
    assert isinstance(e, Engine)
    info = e.info()
    assert (info.engine, info.model_id, info.context_length) == ("sglang", "standin/toy-chatml", 4096)
    assert (info.self_certainty, info.logprob_mode, info.seeds_honoured) == ("topk_proxy", "temperature_scaled", True)
    assert e.vocab_size == 321
    assert logprob_mode_for(info, 0) == "raw" and logprob_mode_for(info, 0.7) == "temperature_scaled"
    assert engine(server.url, raw_logprobs=True, model_id="mine").info().model_dump() | {} == {
        **info.model_dump(), "logprob_mode": "raw", "model_id": "mine"}


def test_seeds_not_honoured_without_deterministic_inference(standin: Callable[..., Standin],
                                                            engine: Callable[..., SGLangEngine]) -> None:
    e = engine(standin(deterministic=False).url)
    assert e.info().seeds_honoured is False
    assert any("NOT honoured" in note for note in e.notes)


def test_unreachable_server_names_the_url(engine: Callable[..., SGLangEngine]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError, match=rf"http://127\.0\.0\.1:{port} is unreachable .*Is it running"):
        engine(f"http://127.0.0.1:{port}", max_retries=1)


def test_health_503_while_starting_is_retried(standin: Callable[..., Standin],
                                              engine: Callable[..., SGLangEngine]) -> None:
    s = standin(health_503_times=2)
    engine(s.url)
    assert len(s.requests("/health")) == 3


def test_health_503_forever_is_a_clear_error(standin: Callable[..., Standin],
                                             engine: Callable[..., SGLangEngine]) -> None:
    s = standin(health_503_times=100)
    with pytest.raises(EngineError, match=r"not healthy: /health answered HTTP 503 after 3 attempt.*loading"):
        engine(s.url, max_retries=2)


def test_bad_url(engine: Callable[..., SGLangEngine]) -> None:
    with pytest.raises(EngineError, match="http://"):
        engine("localhost:30000")


def test_keepalive_below_server_idle_timeout() -> None:
    assert KEEPALIVE_EXPIRY_S < 5


# --- sampling -----------------------------------------------------------------------------------------------

def test_sample_one_item_per_sample_with_its_own_seed(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    params = SampleParams(temperature=0.8, top_p=0.95, max_tokens=8)
    out = e.sample([CHAT, CHAT2], 3, params, top_logprobs=2, seeds=[[1, 2, 3], [4, 5, 6]])

    assert [[s.seed for s in row] for row in out] == [[1, 2, 3], [4, 5, 6]]
    bodies = batch_requests(server)
    assert len(bodies) == 2  # one HTTP call per chat
    for body, chat, seeds in zip(sorted(bodies, key=lambda b: b["sampling_params"][0]["sampling_seed"]),
                                 [CHAT, CHAT2], [[1, 2, 3], [4, 5, 6]]):
        assert "text" not in body
        assert body["input_ids"] == [si.chat_ids(chat)] * 3  # chat template, exactly one BOS
        assert body["input_ids"][0].count(si.BOS_ID) == 1
        assert body["sampling_params"] == [{"max_new_tokens": 8, "temperature": 0.8, "top_p": 0.95,
                                            "sampling_seed": s} for s in seeds]
        assert (body["return_logprob"], body["top_logprobs_num"], body["logprob_start_len"],
                body["return_text_in_logprobs"]) == (True, 2, -1, True)
    for row in out:
        for s in row:
            assert s.finish_reason in ("stop", "length") and s.error is None
            assert s.prompt_tokens == len(si.chat_ids(CHAT)) or s.prompt_tokens == len(si.chat_ids(CHAT2))
            assert s.tokens and all(len(t.top) == 2 and t.text is not None for t in s.tokens)
    again = e.sample([CHAT, CHAT2], 3, params, top_logprobs=2, seeds=[[1, 2, 3], [4, 5, 6]])
    assert [[s.text for s in r] for r in again] == [[s.text for s in r] for r in out]  # seeds honoured


def test_prefix_is_warmed_once_per_chat(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    e.sample([CHAT], 4, SampleParams(max_tokens=4), seeds=[[1, 2, 3, 4]])
    warm = [r["json"] for r in server.requests() if r["json"]["sampling_params"] == {"max_new_tokens": 0}]
    assert warm == [{"input_ids": si.chat_ids(CHAT), "sampling_params": {"max_new_tokens": 0}}]
    server.reset()
    engine(server.url, warm_prefix=False).sample([CHAT], 4, SampleParams(max_tokens=4))
    assert len(server.requests()) == 1


def test_sample_seeds_default_from_params_or_random(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, warm_prefix=False)
    out = e.sample([CHAT], 2, SampleParams(max_tokens=2, seed=10))
    assert [s.seed for s in out[0]] == [10, 11]
    out = e.sample([CHAT], 2, SampleParams(max_tokens=2))
    sent = [sp["sampling_seed"] for sp in server.requests()[-1]["json"]["sampling_params"]]
    assert [s.seed for s in out[0]] == sent and all(isinstance(x, int) for x in sent)


@pytest.mark.parametrize("call, bad", [
    (lambda e: e.sample([CHAT], 2, SampleParams(max_tokens=2, seed=-1)), -1),
    (lambda e: e.sample([CHAT, CHAT2], 2, SampleParams(max_tokens=2), seeds=[[5, 6], [7, -3]]), -3),
    # seed + j for the second sample runs past SGLang's i64 sampling_seed
    (lambda e: e.sample([CHAT], 2, SampleParams(max_tokens=2, seed=2**63 - 1)), 2**63),
    (lambda e: drain(e.stream(CHAT, SampleParams(max_tokens=2, seed=-5))), -5),
], ids=["negative", "explicit-negative", "past-i64", "stream"])
def test_a_seed_outside_what_sglang_and_its_router_take_is_refused_before_sending(
        server: Standin, engine: Callable[..., SGLangEngine], call: Callable[[SGLangEngine], Any], bad: int) -> None:
    """SGLang 0.5.23 verifies sampling_seed as an i64 and sglang-router 0.3.2 parses it as a u64 (a negative one is
    its HTTP 422): only [0, 2**63 - 1] works on both, so anything else fails here, naming the seed, unsent."""
    e = engine(server.url, warm_prefix=False)
    server.reset()
    with pytest.raises(EngineError, match=rf"seed {bad} .*\[0, 2\*\*63 - 1\]"):
        call(e)
    assert server.requests(None) == []
    # the largest seed both take goes through
    [[sample]] = e.sample([CHAT], 1, SampleParams(max_tokens=2, seed=2**63 - 1))
    assert sample.seed == 2**63 - 1 and server.requests()[-1]["json"]["sampling_params"][0]["sampling_seed"] == sample.seed


def test_sample_logprobs_match_the_model(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    prompt = si.chat_ids(CHAT)
    for temperature in (0.0, 0.7):
        s = e.sample([CHAT], 1, SampleParams(temperature=temperature, max_tokens=6), top_logprobs=3)[0][0]
        seq = list(prompt)
        for t in s.tokens:
            logits = si.logits_after(seq)
            expected = si.log_softmax(logits / temperature if temperature else logits)[t.token_id]
            assert t.logprob == pytest.approx(expected)  # greedy raw, sampled temperature-scaled
            assert [a.logprob for a in t.top] == sorted((a.logprob for a in t.top), reverse=True)
            seq.append(t.token_id)


def test_null_top_logprobs_positions(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine]) -> None:
    s = standin(null_top_every=2)
    out = engine(s.url).sample([CHAT], 1, SampleParams(temperature=0, max_tokens=6), top_logprobs=2)[0][0]
    assert len(out.tokens) >= 2
    assert [bool(t.top) for t in out.tokens] == [i % 2 == 0 for i in range(len(out.tokens))]


def test_parse_token_logprobs_with_nulls() -> None:
    tokens = parse_token_logprobs(
        [[-0.1, 5, " Yes"], [None, 6, None], [None, 7, "x"], None, [-0.3, 8, None]],
        [[[-0.1, 5, " Yes"], [-2.0, 6, " No"]], [[-0.2, 6, None], [None, 9, "?"]], None])
    assert [(t.token_id, t.text) for t in tokens] == [(5, " Yes"), (6, None), (7, "x"), (8, None)]
    assert tokens[0].logprob == -0.1 and [a.token_id for a in tokens[0].top] == [5, 6]
    assert tokens[1].logprob == -0.2 and [a.token_id for a in tokens[1].top] == [6]  # null alternative dropped
    assert math.isnan(tokens[2].logprob) and tokens[2].top == []  # unknown, and no top list at all
    assert tokens[3].logprob == -0.3 and tokens[3].top == []


def test_parse_finish_reason_shapes() -> None:
    assert parse_finish_reason({"type": "stop", "matched": 3}) == ("stop", None)
    assert parse_finish_reason({"type": "stop", "matched": "\n\n"}) == ("stop", None)
    assert parse_finish_reason({"type": "length", "length": 8}) == ("length", None)
    assert parse_finish_reason({"type": "abort", "message": "gone", "status_code": 503, "err_type": None}) \
        == ("abort", "gone (status 503)")
    assert parse_finish_reason(None)[0] == "error"


def test_abort_becomes_sample_error(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine]) -> None:
    s = standin(abort_seeds=(99,))
    out = engine(s.url).sample([CHAT], 2, SampleParams(max_tokens=8), seeds=[[99, 100]])[0]
    assert out[0].finish_reason == "abort" and "simulated abort" in (out[0].error or "")
    assert out[1].finish_reason in ("stop", "length") and out[1].error is None


def test_json_schema_is_sent_as_a_string(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
              "required": ["answer", "score"]}
    out = engine(server.url, warm_prefix=False).sample([CHAT], 2, SampleParams(max_tokens=40), json_schema=schema)
    for sp in server.requests()[-1]["json"]["sampling_params"]:
        assert isinstance(sp["json_schema"], str) and json.loads(sp["json_schema"]) == schema
    for s in out[0]:
        assert set(json.loads(s.text)) == {"answer", "score"}


@pytest.mark.parametrize("sampling_params, message", [
    ({"max_new_tokens": 4, "json_schema": {"type": "object"}}, "json_schema: invalid type dict"),
    ({"max_new_tokens": 4, "json_schema": "{}", "regex": "a+"}, "Only one of regex, json_schema"),
    ({"max_new_tokens": 4, "max_tokens": 4}, "unknown field `max_tokens`"),
    ({"max_new_tokens": 4, "top_p": 0}, "top_p"),
])
def test_standin_enforces_documented_validation(server: Standin, sampling_params: dict[str, Any],
                                                message: str) -> None:
    resp = _control.post(f"{server.url}/generate", json={"input_ids": [1, 2, 5], "sampling_params": sampling_params})
    assert resp.status_code == 400 and message in resp.json()["error"]["message"]


def test_client_error_fails_at_once_with_the_server_message(server: Standin,
                                                            engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, warm_prefix=False)
    with pytest.raises(EngineError, match=r"HTTP 400: Requested token count exceeds the model's maximum context"):
        e.sample([CHAT], 1, SampleParams(max_tokens=100_000))
    assert len(server.requests()) == 1  # 4xx is not retried


def test_concurrency_is_bounded_and_order_kept(standin: Callable[..., Standin],
                                               engine: Callable[..., SGLangEngine]) -> None:
    s = standin(delay=0.02)
    e = engine(s.url, concurrency=2, warm_prefix=False)
    chats = [[{"role": "user", "content": f"question {i}"}] for i in range(6)]
    out = e.sample(chats, 1, SampleParams(max_tokens=3), seeds=[[i] for i in range(6)])
    assert [row[0].seed for row in out] == list(range(6))
    assert 1 <= s.max_inflight() <= 2
    by_seed = {r["json"]["sampling_params"][0]["sampling_seed"]: r["json"]["input_ids"][0] for r in s.requests()}
    assert all(by_seed[i] == si.chat_ids(chats[i]) for i in range(6))


# --- next-token probabilities and scoring -------------------------------------------------------------------

def test_next_token_probs_prefill_only_batched(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    probs = e.next_token_probs([CHAT, CHAT2, CHAT3], "Answer:", ["Yes", "No"])

    [req] = server.requests()
    body = req["json"]
    ids = {v: si.encode(v)[0] for v in ("Yes", " Yes", "yes", " yes", "No", " No", "no", " no")}
    assert body["sampling_params"] == {"max_new_tokens": 0}
    assert body["return_logprob"] is True and sorted(body["token_ids_logprob"]) == sorted(ids.values())
    prefix = si.encode("Answer:")
    assert body["input_ids"] == [si.chat_ids(c) + prefix for c in (CHAT, CHAT2, CHAT3)]
    for p, prompt in zip(probs, body["input_ids"]):
        lp = si.raw_logprobs_after(prompt)
        for cand in ("Yes", "No"):
            variants = [i for v, i in ids.items() if v.strip().lower() == cand.lower()]
            assert p[cand] == pytest.approx(sum(math.exp(lp[i]) for i in variants))


def test_next_token_probs_chunks_and_caches(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, max_batch_size=2)
    first = e.next_token_probs([CHAT, CHAT2, CHAT3], "", ["A", "B"])
    assert sorted(len(r["json"]["input_ids"]) for r in server.requests()) == [1, 2]  # sent concurrently
    tokenize_calls = len(server.requests("/tokenize"))
    assert e.next_token_probs([CHAT, CHAT2, CHAT3], "", ["A", "B"]) == first
    assert len(server.requests("/tokenize")) == tokenize_calls  # chats and candidate ids are cached


def test_candidate_variants_single_token_only_and_collisions(server: Standin,
                                                            engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    e.next_token_probs([CHAT], "", ["YES", "x"])
    wanted = set(server.requests()[-1]["json"]["token_ids_logprob"])
    # "YES" and " YES" are several tokens in the toy vocabulary, so only its case variants count; " x" too.
    # A single letter keeps its case (backend/engines/candidates.py): no "X".
    assert wanted == {si.encode(v)[0] for v in ("yes", " yes", "Yes", " Yes", "x")}
    p = e.next_token_probs([CHAT], "", ["Yes", "yes"])[0]
    lp = si.raw_logprobs_after(si.chat_ids(CHAT))
    assert p["Yes"] == pytest.approx(math.exp(lp[si.encode("Yes")[0]]) + math.exp(lp[si.encode(" Yes")[0]]))
    assert p["yes"] == pytest.approx(math.exp(lp[si.encode("yes")[0]]) + math.exp(lp[si.encode(" yes")[0]]))
    with pytest.raises(EngineError, match=r"\['Maybe'\] have no one-token form"):
        e.next_token_probs([CHAT], "", ["Yes", "Maybe"])


def test_score_response_teacher_forced_alignment(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    text = "The answer is Paris."
    tokens = e.score_response(CHAT, text, top_logprobs=3)

    prompt, response = si.chat_ids(CHAT), si.encode(text)
    [req] = server.requests()
    body = req["json"]
    assert body["input_ids"] == prompt + response
    assert body["sampling_params"] == {"max_new_tokens": 0}
    assert body["logprob_start_len"] == len(prompt) - 1  # entry 0 is null, so start one token early
    assert (body["return_logprob"], body["top_logprobs_num"]) == (True, 3)
    assert [t.token_id for t in tokens] == response
    full = prompt + response
    for i, t in enumerate(tokens):
        lp = si.raw_logprobs_after(full[:len(prompt) + i])
        assert t.logprob == pytest.approx(lp[t.token_id])  # the first response token has its logprob too
        assert t.text == si.VOCAB[t.token_id] and len(t.top) == 3
        assert t.top[0].logprob == pytest.approx(lp.max())
    assert e.score_response(CHAT, "") == []


# --- streaming ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("incremental", [False, True])
def test_stream_yields_deltas(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine],
                              incremental: bool) -> None:
    s = standin(incremental_streaming=incremental)
    e = engine(s.url, warm_prefix=False)
    params = SampleParams(temperature=0.8, max_tokens=12, seed=7)
    pieces, finished = drain(e.stream(CHAT, params))
    assert finished.text == "".join(pieces) and finished.finish_reason in ("stop", "length")
    body = s.requests()[-1]["json"]
    assert body["stream"] is True and body["input_ids"] == si.chat_ids(CHAT)
    assert body["sampling_params"]["sampling_seed"] == 7
    assert len(pieces) > 1
    assert "".join(pieces) == e.sample([CHAT], 1, params, seeds=[[7]])[0][0].text


def test_stream_mid_stream_error_carries_text_so_far(standin: Callable[..., Standin],
                                                     engine: Callable[..., SGLangEngine]) -> None:
    s = standin(stream_error_after=3)
    got: list[str] = []
    with pytest.raises(EngineError, match="simulated mid-stream failure") as err:
        for piece in engine(s.url).stream(CHAT, SampleParams(temperature=0, max_tokens=12)):
            got.append(piece)
    assert len(got) == 3 and repr("".join(got)) in str(err.value)


def test_stream_abort_raises(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine]) -> None:
    s = standin(abort_seeds=(5,))
    with pytest.raises(EngineError, match="ended with abort: Stand-in simulated abort"):
        list(engine(s.url).stream(CHAT, SampleParams(max_tokens=12, seed=5)))


def test_stream_retries_before_first_event(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url)
    server.configure(fail_times=1, fail_status=503, drop_times=1)
    assert "".join(e.stream(CHAT, SampleParams(max_tokens=5, seed=1)))
    assert len(server.requests()) == 3


# --- HTTP: auth, retries ------------------------------------------------------------------------------------

def test_api_key_header(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine]) -> None:
    s = standin(api_key="sekrit")
    assert _control.get(f"{s.url}/health").status_code == 200  # exempt
    assert _control.post(f"{s.url}/generate", json={"input_ids": [1]}).json() == {"error": "Unauthorized"}
    s.reset()
    e = engine(s.url, api_key="sekrit")
    e.sample([CHAT], 1, SampleParams(max_tokens=2))
    assert {r["headers"]["authorization"] for r in s.requests(None)} == {"Bearer sekrit"}
    assert "sekrit" not in repr(e) and "sekrit" not in repr(e.__dict__.get("_http"))


def test_api_key_from_env(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    s = standin(api_key="from-env")
    monkeypatch.setenv("CRITLAB_SGLANG_API_KEY", "from-env")
    assert engine(s.url).info().model_id == "standin/toy-chatml"


def test_wrong_api_key_is_a_clear_error_without_the_key(standin: Callable[..., Standin],
                                                        engine: Callable[..., SGLangEngine]) -> None:
    s = standin(api_key="sekrit")
    with pytest.raises(EngineError, match="HTTP 401.*Unauthorized.*API key") as err:
        engine(s.url, api_key="wrong-key")
    assert "wrong-key" not in str(err.value) and "sekrit" not in str(err.value)


@pytest.mark.parametrize("failure", [{"fail_times": 2, "fail_status": 500}, {"fail_times": 2, "fail_status": 429},
                                     {"fail_times": 1, "fail_status": 503}, {"drop_times": 2}])
def test_retries_then_success(server: Standin, engine: Callable[..., SGLangEngine], failure: dict[str, int]) -> None:
    e = engine(server.url, warm_prefix=False)
    server.configure(**failure)
    out = e.sample([CHAT], 2, SampleParams(max_tokens=3), seeds=[[1, 2]])
    assert [s.seed for s in out[0]] == [1, 2]
    assert len(server.requests()) == 1 + max(failure.get("fail_times", 0), failure.get("drop_times", 0))


def test_retries_exhausted_status(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, max_retries=2, warm_prefix=False)
    server.configure(fail_times=10, fail_status=500)
    with pytest.raises(EngineError, match=r"/generate answered HTTP 500 \(after 3 attempts\): Stand-in simulated"):
        e.next_token_probs([CHAT], "", ["Yes"])
    assert len(server.requests()) == 3


def test_retries_exhausted_dropped_connections(server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    e = engine(server.url, max_retries=1)
    server.configure(drop_times=10)
    with pytest.raises(EngineError, match=r"score response: lost the connection to .*/generate after 2 attempt\(s\) "
                                          r"\(RemoteProtocolError"):
        e.score_response(CHAT, "Yes")


# --- router mode --------------------------------------------------------------------------------------------

def test_model_id_needed_only_when_no_route_tells_it(standin: Callable[..., Standin],
                                                    engine: Callable[..., SGLangEngine], tmp_path: Path) -> None:
    tok_dir = si.write_hf_tokenizer_dir(tmp_path / "tok")
    # sglang-router 0.3.2 proxies /get_model_info to a worker: the model id comes through it
    assert engine(standin(router=True).url, tokenizer_path=str(tok_dir)).info().model_id == "standin/toy-chatml"
    silent = standin(fail_times=10, fail_status=404, fail_paths=["/get_model_info", "/v1/models"])
    with pytest.raises(EngineError, match="neither /get_model_info nor /v1/models answered.*--sglang-model-id"):
        engine(silent.url, tokenizer_path=str(tok_dir))


def test_router_without_tokenizer_is_a_clear_error(standin: Callable[..., Standin],
                                                   engine: Callable[..., SGLangEngine]) -> None:
    router = standin(router=True)
    with pytest.raises(EngineError, match=r"does not route /tokenize.*tokenizer_path.*tokenize_url"):
        engine(router.url, model_id="m")


def test_router_with_worker_tokenize_url(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine]) -> None:
    router, worker = standin(router=True, api_key="k"), standin(context_length=2048, api_key="k")
    e = engine(router.url, tokenize_url=worker.url, api_key="k")
    info = e.info()
    # from the worker: the router's own /get_server_info and /v1/models carry neither fact
    assert (info.model_id, info.context_length, info.seeds_honoured) == ("standin/toy-chatml", 2048, True)
    router.reset()
    router.configure(router=True, api_key="k")  # reset restores the initial (non-router) options
    [samples] = e.sample([CHAT], 2, SampleParams(max_tokens=3, seed=40))
    assert [s.seed for s in samples] == [40, 41] and all(s.tokens for s in samples)
    e.next_token_probs([CHAT2], "", ["Yes", "No"])
    assert {r["path"] for r in router.requests(None)} == {"/generate"}
    sampled = [r["forwarded"] for r in router.requests() if r["json"]["sampling_params"].get("max_new_tokens")]
    assert sorted(b["sampling_params"]["sampling_seed"] for b in sampled) == [40, 41]
    assert {r["path"] for r in worker.requests(None)} >= {"/tokenize"}
    assert not worker.requests("/generate")


def test_local_tokenizer_behind_router(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine],
                                       tmp_path: Path) -> None:
    tok_dir = si.write_hf_tokenizer_dir(tmp_path / "tok")
    worker = standin(context_length=2048)
    router = standin(router=True, worker_urls=[worker.url])
    e = engine(router.url, tokenizer_path=str(tok_dir), model_id="toy")
    # the worker the router lists at /workers tells the context length and seeds, not the tokenizer (4096)
    assert (e.info().model_id, e.info().context_length, e.vocab_size) == ("toy", 2048, si.VOCAB_SIZE)
    assert e.info().seeds_honoured is True
    for chat in (CHAT, CHAT2, CHAT3):
        assert e._chat_ids(chat) == si.chat_ids(chat)
    for text in ("The answer is Paris.", " Yes", "a\nb {x}: [1, 2]", "yes no"):
        assert e._tokenizer.encode([text])[0] == si.encode(text)
    p = e.next_token_probs([CHAT], "", ["Yes", "No"])[0]
    assert 0 < p["Yes"] < 1 and 0 < p["No"] < 1
    tokens = e.score_response(CHAT, "Paris")
    assert [t.token_id for t in tokens] == si.encode("Paris")
    assert not router.requests("/tokenize") and {r["path"] for r in router.requests(None)} <= {
        "/health", "/get_model_info", "/get_server_info", "/workers", "/generate"}
    assert not worker.requests("/generate")


def test_router_without_reachable_worker(standin: Callable[..., Standin], engine: Callable[..., SGLangEngine],
                                         tmp_path: Path) -> None:
    tok_dir = si.write_hf_tokenizer_dir(tmp_path / "tok")
    router = standin(router=True)  # lists no worker this client can reach
    e = engine(router.url, tokenizer_path=str(tok_dir))
    assert (e.info().context_length, e.info().seeds_honoured) == (4096, False)
    assert any("config.json (max_position_embeddings)" in n for n in e.notes)
    assert any("behind sglang-router and no worker answered" in n for n in e.notes)
    # never the tokenizer's model_max_length (tokenizer_config.json here still says 4096)
    (tok_dir / "config.json").write_text(json.dumps({"vocab_size": si.VOCAB_SIZE}))
    with pytest.raises(EngineError, match=r"context length .*behind sglang-router: give a worker URL"):
        engine(router.url, tokenizer_path=str(tok_dir))


def test_tokenize_refusing_messages_names_every_cause(standin: Callable[..., Standin],
                                                      engine: Callable[..., SGLangEngine]) -> None:
    s = standin(fail_times=1, fail_status=400, fail_paths=["/tokenize"])
    with pytest.raises(EngineError, match=r"before 0\.5\.23.*0\.5\.23 also refuses.*built-in --chat-template.*"
                                          r"own chat encoding.*--sglang-tokenizer"):
        engine(s.url)


def test_local_tokenizer_errors(tmp_path: Path, server: Standin, engine: Callable[..., SGLangEngine]) -> None:
    with pytest.raises(EngineError, match="no tokenizer.json"):
        engine(server.url, tokenizer_path=str(tmp_path))
    tok_dir = si.write_hf_tokenizer_dir(tmp_path / "tok")
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": None}))
    with pytest.raises(EngineError, match="no chat_template"):
        engine(server.url, tokenizer_path=str(tok_dir))
