"""The stand-in's body log (tests/standin_body_log.py), which `make check-sglang` feeds to SGLang's own
request classes: every POST body lands as one whole JSON line saying who sent it and what the stand-in
answered, under concurrent requests and from several processes at once."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tests.standin_sglang as si
from backend.engines.base import SampleParams
from backend.engines.sglang import SGLangEngine
from tests import standin_body_log

CHATS = [[{"role": "user", "content": f"Is {i} the answer?"}] for i in range(24)]


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A stand-in that logs its bodies to the file the environment names (as `make check-sglang` sets it)."""
    log = tmp_path / "bodies.jsonl"
    monkeypatch.setenv(standin_body_log.BODY_LOG_ENV, str(log))
    url, stop = si.start_standin()
    yield url, log
    stop()


def test_client_bodies_are_logged_whole_under_concurrency(logged: tuple[str, Path]) -> None:
    url, log = logged
    with SGLangEngine(url, concurrency=8, max_batch_size=1, backoff=0.001) as e:
        e.next_token_probs(CHATS, "", ["Yes", "No"])  # 24 requests, 8 in flight at once
        e.sample([CHATS[0]], 2, SampleParams(max_tokens=3, seed=4))
    recorded = [r for r in httpx.get(f"{url}/_standin/requests").json() if r["method"] == "POST"]
    entries = standin_body_log.read(log)

    def key(path: str, body: object) -> str:
        return json.dumps([path, body], sort_keys=True)

    # each one once, whole (lines are written as answers finish, so not in arrival order)
    assert len(recorded) >= 27 and sorted(key(x["path"], x["body"]) for x in entries) == sorted(
        key(r["path"], r["json"]) for r in recorded)
    assert {(x["path"], x["source"], x["status"]) for x in entries} == {("/generate", "critlab", 200),
                                                                         ("/tokenize", "critlab", 200)}


def test_other_senders_and_refusals_are_told_apart(logged: tuple[str, Path]) -> None:
    url, log = logged
    bad = {"input_ids": [1, 10], "sampling_params": {"max_new_tokens": 1, "top_p": 0}}
    assert httpx.post(f"{url}/generate", json=bad).status_code == 400
    assert httpx.post(f"{url}/tokenize", json={"prompt": "Yes"}).status_code == 200
    httpx.get(f"{url}/health").raise_for_status()  # no body: not logged
    assert standin_body_log.read(log) == [
        {"path": "/generate", "source": "other", "status": 400, "body": bad},
        {"path": "/tokenize", "source": "other", "status": 200, "body": {"prompt": "Yes"}}]


def test_a_router_stand_in_logs_what_it_would_forward(tmp_path: Path) -> None:
    log = tmp_path / "bodies.jsonl"
    url, stop = si.start_standin(router=True, body_log=str(log))
    try:
        ok = {"input_ids": [1, 10], "sampling_params": {"max_new_tokens": 1, "sampling_seed": 3}}
        assert httpx.post(f"{url}/generate", json=ok).status_code == 200
        refused = {"input_ids": [1, 10], "sampling_params": {"max_new_tokens": 1, "sampling_seed": -1}}
        assert httpx.post(f"{url}/generate", json=refused).status_code == 422  # never reaches a worker
    finally:
        stop()
    [entry] = standin_body_log.read(log)
    assert (entry["source"], entry["status"]) == ("standin-router", 200)
    assert entry["body"]["model"] is None and entry["body"]["log_metrics"] is True
    assert entry["body"]["sampling_params"] == ok["sampling_params"]


def _append_many(log: str, writer: int, count: int) -> None:
    for i in range(count):
        # ~200 KB a line: far past what one pipe write keeps whole, so only the lock keeps lines apart
        standin_body_log.append(log, {"writer": writer, "i": i, "pad": str(writer) * 200_000})


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    log = str(tmp_path / "bodies.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(log, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    lines = Path(log).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert sorted((e["writer"], e["i"]) for e in entries) == [(w, i) for w in range(4) for i in range(25)]
    assert all(e["pad"] == str(e["writer"]) * 200_000 for e in entries)
