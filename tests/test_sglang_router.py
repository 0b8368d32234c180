"""critlab behind sglang-router: the REAL router binary (sglang-router 0.3.2, tests/real_router.py) in
front of two SGLang stand-ins, and the stand-in's router mode checked against the same contract, so the
stand-in-only tests in test_engine_sglang.py test against what the router really does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.standin_sglang as si
from backend.engines.base import EngineError, SampleParams
from backend.engines.sglang import SGLangEngine
from tests import standin_body_log as si_body_log
from tests.real_router import start_real_router
from tests.streaming import drain

KEY = "router-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = [{"role": "user", "content": "Is Paris the capital of France?"}]
CHAT2 = [{"role": "system", "content": "Answer yes or no."}, {"role": "user", "content": "Is the answer good?"}]
WORKER_CTX = 2048  # differs from the tokenizer's model_max_length and max_position_embeddings (4096)


@dataclass
class Router:
    kind: str                      # "real" | "standin"
    url: str
    workers: list[str]             # stand-in workers behind it (for "standin": the router stand-in itself)

    def forwarded(self) -> list[dict[str, Any]]:
        """The /generate bodies as the workers received them."""
        if self.kind == "standin":
            got = httpx.get(f"{self.url}/_standin/requests", params={"path": "/generate"}).json()
            return [r["forwarded"] for r in got if "forwarded" in r]
        return [r["json"] for w in self.workers
                for r in httpx.get(f"{w}/_standin/requests", params={"path": "/generate"}).json()]

    def reset(self) -> None:
        for u in {self.url, *self.workers} if self.kind == "standin" else self.workers:
            httpx.post(f"{u}/_standin/reset").raise_for_status()


@pytest.fixture(scope="module")
def workers() -> Iterator[list[str]]:
    started = [si.start_standin(api_key=KEY, context_length=WORKER_CTX) for _ in range(2)]
    yield [url for url, _ in started]
    for _, stop in started:
        stop()


@pytest.fixture(scope="module")
def real_router(workers: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    url, stop = start_real_router(workers, api_key=KEY, log=tmp_path_factory.mktemp("router") / "router.log")
    yield Router("real", url, workers)
    stop()


@pytest.fixture(scope="module")
def standin_router(workers: list[str]) -> Iterator[Router]:
    url, stop = si.start_standin(api_key=KEY, router=True, worker_urls=tuple(workers), context_length=WORKER_CTX)
    yield Router("standin", url, workers)
    stop()


@pytest.fixture(params=["real", "standin"])
def router(request: pytest.FixtureRequest) -> Router:
    r: Router = request.getfixturevalue(f"{request.param}_router")
    r.reset()
    return r


@pytest.fixture
def tok_dir(tmp_path: Path) -> Path:
    return si.write_hf_tokenizer_dir(tmp_path / "tok")


@pytest.fixture
def engine() -> Iterator[Callable[..., SGLangEngine]]:
    made: list[SGLangEngine] = []

    def make(url: str, **kw: Any) -> SGLangEngine:
        made.append(SGLangEngine(url, api_key=KEY, backoff=0.001, timeout=20.0, **kw))
        return made[-1]

    yield make
    for e in made:
        e.close()


# --- the router's contract (real binary and stand-in alike) ----------------------------------------------------

def test_generate_takes_one_sampling_params_object(router: Router) -> None:
    one = {"max_new_tokens": 1, "sampling_seed": 1}
    r = httpx.post(f"{router.url}/generate", headers=AUTH, json={"input_ids": [[1, 10], [1, 11]],
                                                                 "sampling_params": [one, one]})
    assert r.status_code == 422 and "sampling_params[0]: invalid type: map, expected f32" in r.text
    r = httpx.post(f"{router.url}/generate", headers=AUTH,
                   json={"input_ids": [1, 10], "sampling_params": {"max_new_tokens": 1, "json_schema": {}}})
    assert r.status_code == 422 and "sampling_params.json_schema: invalid type" in r.text
    for bad, where in (({"text": ["a", "b"], "sampling_params": {"max_new_tokens": 1}}, "text: invalid type"),
                       ({"input_ids": [1, 10], "sampling_params": {"max_new_tokens": 1.5}}, "expected u32"),
                       ({"input_ids": [1, 10], "sampling_params": {"temperature": "hot"}}, "expected f32"),
                       ({"input_ids": [1, 10], "sampling_params": {"sampling_seed": -1}}, "expected u64")):
        r = httpx.post(f"{router.url}/generate", headers=AUTH, json=bad)
        assert r.status_code == 422 and where in r.text, (bad, r.text)
    assert not router.forwarded()


def test_body_is_rewritten_with_f32_sampling_floats(router: Router) -> None:
    sp = {"max_new_tokens": 1, "temperature": 0.123456789012, "top_p": 0.987654321, "min_p": 0.7,
          "repetition_penalty": 1.23456789012, "sampling_seed": 2**40, "logit_bias": {"5": 1.0},
          "stream_interval": 3}
    r = httpx.post(f"{router.url}/generate", headers=AUTH,
                   json={"input_ids": [1, 10, 11], "sampling_params": sp, "rid": "r1", "not_a_field": 1})
    assert r.status_code == 200, r.text
    [got] = router.forwarded()
    # the shortest decimal of the nearest f32: 0.7 still reads 0.7 on the worker
    assert got["sampling_params"] == {"max_new_tokens": 1, "temperature": 0.12345679, "top_p": 0.9876543,
                                      "min_p": 0.7, "repetition_penalty": 1.2345679, "sampling_seed": 2**40}
    assert got["model"] is None and got["rid"] == "r1" and "not_a_field" not in got


def test_router_answers_info_itself_and_proxies_model_info(router: Router) -> None:
    server_info = httpx.get(f"{router.url}/get_server_info", headers=AUTH).json()
    assert server_info["router_manager"] is True
    assert "context_length" not in server_info and "enable_deterministic_inference" not in server_info
    [card] = httpx.get(f"{router.url}/v1/models", headers=AUTH).json()["data"]
    assert card["id"] == "standin/toy-chatml" and "max_model_len" not in card
    model_info = httpx.get(f"{router.url}/get_model_info", headers=AUTH)
    assert model_info.status_code == 200 and model_info.json()["model_path"] == "standin/toy-chatml"
    for path in ("/tokenize", "/v1/score", "/server_info", "/model_info"):
        method = "POST" if path in ("/tokenize", "/v1/score") else "GET"
        assert httpx.request(method, f"{router.url}{path}", headers=AUTH, json={}).status_code == 404, path
    workers = httpx.get(f"{router.url}/workers", headers=AUTH).json()["workers"]
    assert sorted(w["url"] for w in workers) == sorted(router.workers)


# --- critlab's client through the router ----------------------------------------------------------------------

def test_sample_sends_one_request_per_seed(router: Router, engine: Callable[..., SGLangEngine],
                                           tok_dir: Path) -> None:
    e = engine(router.url, tokenizer_path=str(tok_dir))
    info = e.info()
    # server facts come from a worker: its context length, its deterministic inference
    assert (info.model_id, info.context_length, info.seeds_honoured) == ("standin/toy-chatml", WORKER_CTX, True)
    router.reset()
    params = SampleParams(max_tokens=6, temperature=0.7, top_p=0.9, seed=100)
    [samples] = e.sample([CHAT], 3, params, top_logprobs=2)
    assert [s.seed for s in samples] == [100, 101, 102]
    assert all(s.tokens and s.finish_reason in ("stop", "length") for s in samples)
    bodies = [b for b in router.forwarded() if b["sampling_params"].get("max_new_tokens") != 0]
    assert sorted(b["sampling_params"]["sampling_seed"] for b in bodies) == [100, 101, 102]
    assert all(isinstance(b["input_ids"][0], int) and "n" not in b["sampling_params"] for b in bodies)
    # the same seeds give the same samples (each seed reached a worker intact)
    [again] = e.sample([CHAT], 3, params, top_logprobs=2)
    assert [s.text for s in again] == [s.text for s in samples]


def test_stream_probabilities_and_scoring(router: Router, engine: Callable[..., SGLangEngine],
                                          tok_dir: Path) -> None:
    e = engine(router.url, tokenizer_path=str(tok_dir))
    pieces, sample = drain(e.stream(CHAT, SampleParams(max_tokens=8, temperature=0.7, seed=5)))
    assert "".join(pieces) == sample.text and sample.text
    assert e.sample([CHAT], 1, SampleParams(max_tokens=8, temperature=0.7, seed=5))[0][0].text == sample.text
    probs = e.next_token_probs([CHAT, CHAT2], "", ["Yes", "No"])
    ids = [si.chat_ids(c) for c in (CHAT, CHAT2)]
    for p, prompt in zip(probs, ids):
        exact = si.raw_logprobs_after(prompt)
        yes = sum(float(si.np.exp(exact[t])) for t in e.candidate_token_ids(["Yes", "No"])["Yes"])
        assert p["Yes"] == pytest.approx(yes, rel=1e-6)
    tokens = e.score_response(CHAT, "Paris is")
    assert [t.token_id for t in tokens] == si.encode("Paris is")
    prompt = si.chat_ids(CHAT)
    first = si.raw_logprobs_after(prompt)[tokens[0].token_id]
    assert tokens[0].logprob == pytest.approx(float(first), rel=1e-6)


def test_facts_from_a_named_worker_without_a_local_tokenizer(router: Router,
                                                           engine: Callable[..., SGLangEngine]) -> None:
    e = engine(router.url, tokenize_url=router.workers[0])
    assert (e.info().context_length, e.info().seeds_honoured) == (WORKER_CTX, True)
    [samples] = e.sample([CHAT], 2, SampleParams(max_tokens=4, seed=7))
    assert [s.seed for s in samples] == [7, 8]


def test_forwarded_bodies_are_logged_as_the_router_sent_them(router: Router, engine: Callable[..., SGLangEngine],
                                                            tok_dir: Path, tmp_path: Path) -> None:
    """What `make check-sglang` checks against SGLang 0.5.23: the body a worker gets, the router's fields in it."""
    log = tmp_path / "bodies.jsonl"
    for u in {router.url, *router.workers} if router.kind == "standin" else router.workers:
        httpx.post(f"{u}/_standin/config", json={"body_log": str(log)}).raise_for_status()
    e = engine(router.url, tokenizer_path=str(tok_dir))
    e.sample([CHAT], 2, SampleParams(max_tokens=3, seed=9))
    entries = si_body_log.read(log)
    source = "router" if router.kind == "real" else "standin-router"
    assert entries and {(x["path"], x["source"], x["status"]) for x in entries} == {("/generate", source, 200)}
    seeds = sorted(x["body"]["sampling_params"].get("sampling_seed", -1) for x in entries)
    assert seeds == [-1, 9, 10]  # the prefix warm-up (no seed) and one request per sample
    for x in entries:
        assert x["body"]["model"] is None and x["body"]["log_metrics"] is True and x["body"]["no_logs"] is False


def test_a_negative_seed_is_refused_before_the_router_sees_it(router: Router, engine: Callable[..., SGLangEngine],
                                                              tok_dir: Path) -> None:
    """The router's u64 seed would answer HTTP 422; the client names the seed instead and sends nothing."""
    e = engine(router.url, tokenizer_path=str(tok_dir))
    router.reset()
    with pytest.raises(EngineError, match=r"seed -1 is outside"):
        e.sample([CHAT], 2, SampleParams(max_tokens=2, seed=-1))
    assert not router.forwarded()
