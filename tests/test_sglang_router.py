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
from backend.engines.sglang import SGLangEngine
from tests.real_router import start_real_router

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
    pytest.importorskip("tokenizers")
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
    assert not router.forwarded()


def test_body_is_rewritten_with_f32_sampling_floats(router: Router) -> None:
    sp = {"max_new_tokens": 1, "temperature": 0.123456789012, "top_p": 0.987654321, "min_p": 0.7,
          "sampling_seed": 2**40, "logit_bias": {"5": 1.0}, "stream_interval": 3}
    r = httpx.post(f"{router.url}/generate", headers=AUTH,
                   json={"input_ids": [1, 10, 11], "sampling_params": sp, "rid": "r1", "not_a_field": 1})
    assert r.status_code == 200, r.text
    [got] = router.forwarded()
    # the shortest decimal of the nearest f32: 0.7 still reads 0.7 on the worker
    assert got["sampling_params"] == {"max_new_tokens": 1, "temperature": 0.12345679, "top_p": 0.9876543,
                                      "min_p": 0.7, "sampling_seed": 2**40}
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
