"""Generation jobs against a faulty SGLang server (the stand-in, tests/standin_sglang.py): timeouts, HTTP
500, 429 with Retry-After, dropped keep-alive connections, truncated / cut / malformed bodies, a server
that dies in the middle of a job, answers of the wrong shape, and Live's streams beside a running job.

Each fault is tried twice. Transient (the fault hits once): the job retries and finishes, with exactly one
extra request. Persistent (aimed at one prompt, more often than the client retries): the job ends `failed`
with a reason a person can read, every other prompt's samples are stored, and a rerun with the same
settings sends exactly the missing prompt's samples. Retries, backoff and timeouts are made small through
the engine's constructor, so the whole file runs in about ten seconds.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from app.services import generation
from app.services.context import AppContext, EngineConfig
from backend.engines.base import EngineError, SampleParams
from backend.engines.sglang import SGLangEngine
from backend.engines.sglang_http import _retry_after
from storage.db import Database
from storage.models import Job, SamplingSettings
from tests.builders import make_prompt, make_study
from tests.standin_sglang import start_standin

PROMPTS = 4
N = 2
SETTINGS = SamplingSettings(n=N, max_tokens=4, seed=5)
TIMEOUT_S = 0.75  # the client's timeout where the fault is a timeout; 10 s elsewhere, so a slow machine
#                   cannot turn a healthy answer into an extra retry
RETRIES = 2  # so 3 attempts
TARGET = "q2"  # persistent faults hit this prompt only (its text is "Say 2")

_control = httpx.Client(timeout=10)


class Server:
    """A stand-in and its control routes."""

    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url, self.stop = url, stop

    def configure(self, **options: Any) -> None:
        _control.post(f"{self.url}/_standin/config", json=options).raise_for_status()

    def reset(self) -> None:
        _control.post(f"{self.url}/_standin/reset").raise_for_status()

    def generate_bodies(self) -> list[dict[str, Any]]:
        return [r["json"] for r in _control.get(f"{self.url}/_standin/requests",
                                                params={"path": "/generate"}).json()]

    def stats(self) -> dict[str, int]:
        return _control.get(f"{self.url}/_standin/stats").json()

    def wait_for(self, key: str, at_least: int) -> None:
        """Until the stand-in's counter reaches `at_least` (a guard against hanging, not a measurement)."""
        deadline = time.monotonic() + 10
        while self.stats()[key] < at_least:
            assert time.monotonic() < deadline, f"stand-in never reached {key} >= {at_least}: {self.stats()}"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def shared() -> Iterator[Server]:
    server = Server(*start_standin())
    yield server
    server.stop()


@pytest.fixture
def server(shared: Server) -> Server:
    shared.reset()
    return shared


@pytest.fixture
def make_ctx(db: Database) -> Iterator[Callable[..., AppContext]]:
    """make(url, **engine_options) -> a context whose engine has small retries, backoff and timeout."""
    made: list[AppContext] = []

    def make(url: str, **engine_options: Any) -> AppContext:
        def engine(cfg: EngineConfig) -> SGLangEngine:
            # warm_prefix off: one /generate request per prompt, so requests can be counted exactly
            return SGLangEngine(cfg.sglang_url or "", **{"max_retries": RETRIES, "backoff": 0.005,
                                                         "timeout": 10.0, "vocab_size": 256,
                                                         "warm_prefix": False, **engine_options})

        made.append(AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=url),
                               engine_factory=engine))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


def _study(db: Database) -> None:
    s = make_study(db, "s")
    for i in range(PROMPTS):
        make_prompt(db, s.id, f"q{i}", f"Say {i}")


def _generate(ctx: AppContext) -> Job:
    return generation.start_generation(ctx, "s", SETTINGS, background=False)


def _stored(db: Database) -> dict[str, int]:
    """external id -> responses stored."""
    return dict(db.fetchall("SELECT p.external_id, count(*) FROM response r JOIN prompt p ON p.id = r.prompt_id "
                            "GROUP BY 1 ORDER BY 1"))


def _seeds(bodies: list[dict[str, Any]]) -> list[int]:
    return sorted(sp["sampling_seed"] for b in bodies for sp in b["sampling_params"])


# fault, options for one transient hit, options for a persistent fault on TARGET, the reason it ends with
FAULTS = [
    ("timeout", {"stall_times": 1, "stall_s": 30},
     {"stall_times": 99, "stall_s": 30},
     rf"no answer from http://\S+/generate within {TIMEOUT_S:g} s, 3 attempt\(s\) .*raise the timeout"),
    ("http-500", {"fail_times": 1, "fail_status": 500},
     {"fail_times": 99, "fail_status": 500},
     r"/generate answered HTTP 500 \(after 3 attempts\): Stand-in simulated failure"),
    ("http-429-retry-after", {"fail_times": 1, "fail_status": 429, "retry_after": "0.05"},
     {"fail_times": 99, "fail_status": 429, "retry_after": "0.05"},
     r"/generate answered HTTP 429 \(after 3 attempts\).*over its request limit"),
    # The engine's start-up leaves one kept-alive connection in the pool; the job's first request reuses it
    # and has it dropped, the retry goes out on a fresh one. Persistent: every connection is dropped.
    ("dropped-keep-alive", {"drop_keepalive_times": 1, "fault_match": None},
     {"drop_times": 99},
     r"lost the connection to http://\S+/generate after 3 attempt\(s\) \(RemoteProtocolError: Server disconnected"),
    ("truncated-body", {"bad_body_times": 1, "bad_body": "truncated"},
     {"bad_body_times": 99, "bad_body": "truncated"},
     r"""/generate answered with a body that is not valid JSON, 3 attempt\(s\) \(\d+ bytes: '\[\{"text".*\.\.\.'\)"""),
    ("malformed-body", {"bad_body_times": 1, "bad_body": "malformed"},
     {"bad_body_times": 99, "bad_body": "malformed"},
     r"/generate answered with a body that is not valid JSON, 3 attempt\(s\)"),
    ("cut-body", {"bad_body_times": 1, "bad_body": "cut"},
     {"bad_body_times": 99, "bad_body": "cut"},
     r"lost the connection to http://\S+/generate after 3 attempt\(s\) \(RemoteProtocolError: peer closed"),
]


@pytest.mark.parametrize(("fault", "once", "persistent", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
def test_transient_fault_is_retried_and_the_job_finishes(
        fault: str, once: dict[str, Any], persistent: dict[str, Any], reason: str, server: Server,
        make_ctx: Callable[..., AppContext], caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_ctx(server.url, timeout=TIMEOUT_S if fault == "timeout" else 10.0)
    _study(ctx.db)
    ctx.engine()  # started before the fault is armed: its start-up requests are not the target
    server.configure(**{"fault_match": "Say 2", **once})
    with caplog.at_level(logging.INFO, logger="backend.engines.sglang_http"):
        job = _generate(ctx)
    assert (job.status, job.done, job.error) == ("done", PROMPTS * N, None)
    assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS)}
    bodies = server.generate_bodies()
    assert len(bodies) == PROMPTS + 1  # the one retry
    assert len(set(map(str, bodies))) == PROMPTS  # ... of the same request
    retries = [r for r in caplog.records if hasattr(r, "retry_delay")]
    assert len(retries) == 1
    if fault == "timeout":
        server.wait_for("client_aborts", 1)  # the client hung up, which aborts the request on SGLang
    if fault == "http-429-retry-after":
        assert retries[0].retry_reason == "HTTP 429" and retries[0].retry_after == 0.05
        assert retries[0].retry_delay >= 0.05  # at least what the server asked for, whatever the backoff


@pytest.mark.parametrize(("fault", "once", "persistent", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
def test_persistent_fault_fails_the_job_keeps_the_rest_and_a_rerun_fills_the_gap(
        fault: str, once: dict[str, Any], persistent: dict[str, Any], reason: str, server: Server,
        make_ctx: Callable[..., AppContext]) -> None:
    ctx = make_ctx(server.url, timeout=TIMEOUT_S if fault == "timeout" else 10.0)
    _study(ctx.db)
    ctx.engine()
    server.configure(**{"fault_match": "Say 2", **persistent})
    job = _generate(ctx)
    assert job.status == "failed"
    assert job.error.startswith(f"prompt {TARGET!r}: sample: ")
    assert re.search(reason, job.error), job.error
    stored = (PROMPTS - 1) * N
    assert job.error.endswith(f"({stored} of {PROMPTS * N} responses are stored; run again to finish)")
    assert job.done == stored
    assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS) if f"q{i}" != TARGET}
    target_requests = [b for b in server.generate_bodies() if b["sampling_params"][0]["sampling_seed"]
                       == generation.sample_seed(SETTINGS.seed, TARGET, 0)]
    assert len(target_requests) == RETRIES + 1

    server.reset()  # the fault is gone
    rerun = _generate(ctx)
    assert (rerun.status, rerun.total, rerun.done, rerun.error) == ("done", N, N, None)
    bodies = server.generate_bodies()
    assert len(bodies) == 1  # only the missing prompt, all its samples in one request
    assert _seeds(bodies) == sorted(generation.sample_seed(SETTINGS.seed, TARGET, i) for i in range(N))
    assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS)}


def test_a_prompt_the_server_always_refuses_does_not_block_the_others(
        server: Server, make_ctx: Callable[..., AppContext]) -> None:
    """One request at a time, so the prompts after the refused one start only after it failed: they are
    still sampled (the job names the refused prompt), and every rerun tries only that one."""
    ctx = make_ctx(server.url, concurrency=1)
    _study(ctx.db)
    ctx.engine()
    server.configure(fault_match="Say 1", fail_times=999, fail_status=500)
    for _ in range(2):
        job = _generate(ctx)
        assert job.status == "failed" and job.error.startswith("prompt 'q1': "), job.error
        assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS) if i != 1}


def test_a_refusing_server_stops_the_job_after_a_few_prompts(
        server: Server, make_ctx: Callable[..., AppContext]) -> None:
    ctx = make_ctx(server.url, concurrency=1)
    s = make_study(ctx.db, "s")
    for i in range(10):
        make_prompt(ctx.db, s.id, f"q{i}", f"Say {i}")
    ctx.engine()
    server.configure(fault_match=None, fail_times=9999, fail_status=500)
    job = _generate(ctx)
    assert job.status == "failed" and "(and 2 more failed prompts)" in job.error, job.error
    attempted = {b["sampling_params"][0]["sampling_seed"] for b in server.generate_bodies()}
    assert len(attempted) == generation.STOP_AFTER  # not all ten: it stopped starting new prompts


def test_server_dying_mid_job(make_ctx: Callable[..., AppContext]) -> None:
    """The stand-in answers the first /generate request, holds the others, and is stopped meanwhile. The job
    keeps the answered prompt and fails saying it cannot reach the server; the server comes back at the
    same URL and a rerun (same settings, same engine and connection pool) sends only the missing prompts."""
    server = Server(*start_standin(hang_after=1))
    port = int(server.url.rsplit(":", 1)[1])
    ctx = make_ctx(server.url)
    _study(ctx.db)
    ctx.engine()
    job = generation.start_generation(ctx, "s", SETTINGS, background=True)
    try:
        server.wait_for("held", PROMPTS - 1)  # every prompt is in flight (the engine's concurrency): one answered
    finally:
        server.stop()
    ctx.wait_jobs(timeout=30)

    failed = ctx.db.fetchrow("SELECT status, done, error FROM job WHERE id = ?", [job.id])
    assert failed["status"] == "failed" and failed["done"] == N
    assert re.search(r"^prompt 'q\d': sample: (lost the connection to|cannot connect to) "
                     rf"{re.escape(server.url)}/generate after 3 attempt\(s\)", failed["error"]), failed["error"]
    assert failed["error"].endswith(f"(and {PROMPTS - 2} more failed prompts) "
                                    f"({N} of {PROMPTS * N} responses are stored; run again to finish)")
    [(answered, count)] = _stored(ctx.db).items()
    assert count == N

    revived = Server(*start_standin(port=port))
    try:
        rerun = generation.start_generation(ctx, "s", SETTINGS, background=False)
        assert (rerun.status, rerun.total, rerun.done) == ("done", (PROMPTS - 1) * N, (PROMPTS - 1) * N), rerun.error
        bodies = revived.generate_bodies()
        assert len(bodies) == PROMPTS - 1
        missing = [f"q{i}" for i in range(PROMPTS) if f"q{i}" != answered]
        assert _seeds(bodies) == sorted(generation.sample_seed(SETTINGS.seed, p, i) for p in missing for i in range(N))
        assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS)}
    finally:
        revived.stop()


def test_live_streams_beside_a_running_job_reach_the_server(make_ctx: Callable[..., AppContext]) -> None:
    """A job keeps `concurrency` prompts in flight; the Live tab's streams (up to 8) beside it reach the server
    at once instead of queueing in the client for a connection the job holds."""
    server = Server(*start_standin(hang_after=0))  # every /generate request stays unanswered
    concurrency = 2
    ctx = make_ctx(server.url, concurrency=concurrency, max_retries=0, timeout=30)
    _study(ctx.db)
    engine = ctx.engine()

    def live() -> None:
        with contextlib.suppress(EngineError):  # the server is stopped under it
            for _ in engine.stream([{"role": "user", "content": "Hello"}], SampleParams(max_tokens=4)):
                pass

    streams = [threading.Thread(target=live) for _ in range(8)]
    generation.start_generation(ctx, "s", SETTINGS, background=True)
    try:
        server.wait_for("held", concurrency)
        for t in streams:
            t.start()
        server.wait_for("held", concurrency + len(streams))
        assert server.stats()["generate_requests"] == concurrency + len(streams)  # the job kept to its width
    finally:
        server.stop()
        for t in streams:
            if t.is_alive():
                t.join(timeout=30)
        ctx.wait_jobs(timeout=30)


def test_answer_of_the_wrong_shape_fails_at_once_with_what_came_back(
        server: Server, make_ctx: Callable[..., AppContext]) -> None:
    """Valid JSON of the wrong shape (another version of the API) is not a glitch on the way: no retry, the
    prompt fails with a reason that shows the answer, the other prompts are kept."""
    ctx = make_ctx(server.url)
    _study(ctx.db)
    ctx.engine()
    server.configure(fault_match="Say 2", bad_body_times=99, bad_body="wrong_shape")
    job = _generate(ctx)
    assert job.status == "failed"
    assert re.match(rf"prompt {TARGET!r}: sample: unexpected answer from http://\S+/generate \(ValueError: .*\): "
                    r"\[\{'text'", job.error), job.error
    assert len(server.generate_bodies()) == PROMPTS
    assert _stored(ctx.db) == {f"q{i}": N for i in range(PROMPTS) if f"q{i}" != TARGET}


@pytest.mark.parametrize(("header", "low", "high"), [
    ("2", 2.0, 2.0),
    ("0.05", 0.05, 0.05),
    ("-3", 0.0, 0.0),
    ("soon", None, None),
    ("in 3600 s", 3000.0, 3601.0),  # an HTTP date an hour ahead, made when the test runs (not at collection)
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),
])
def test_retry_after_header_forms(header: str, low: float | None, high: float | None) -> None:
    if header == "in 3600 s":
        header = format_datetime(datetime.now(UTC) + timedelta(seconds=3600), usegmt=True)
    got = _retry_after(header)
    if low is None:
        assert got is None
    else:
        assert got is not None and low <= got <= high
