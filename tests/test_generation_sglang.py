"""Generation runs through the SGLang client against the stand-in server: stats stored, a failing
server ends the job `failed` with the reason and keeps finished samples, a rerun fills the rest."""

from __future__ import annotations

import httpx
import pytest

from app.services import generation
from app.services.context import AppContext, EngineConfig
from backend.engines.sglang import SGLangEngine
from storage.db import Database
from storage.models import SamplingSettings
from tests.builders import make_prompt, make_study


@pytest.fixture
def ctx(db: Database, standin: str) -> AppContext:
    def factory(cfg: EngineConfig) -> SGLangEngine:
        return SGLangEngine(cfg.sglang_url, max_retries=1, backoff=0.01, vocab_size=256)

    return AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=standin), engine_factory=factory)


def _prompts(db: Database, n: int = 3) -> None:
    s = make_study(db, "s")
    for i in range(n):
        make_prompt(db, s.id, f"q{i}", f"Say {i}")


def test_sglang_generation_stores_samples_with_proxy_stats(ctx: AppContext, standin: str) -> None:
    _prompts(ctx.db)
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, max_tokens=8, seed=3), background=False)
    assert job.status == "done" and job.done == 6
    rows = ctx.db.fetchdicts("SELECT * FROM response ORDER BY id")
    assert all(r["engine"] == "sglang" and r["model_id"] == "standin/toy-chatml" for r in rows)
    assert all(r["self_certainty_mode"] == "topk_proxy" and r["logprob_mode"] == "temperature_scaled" for r in rows)
    assert all(1 <= r["token_count"] <= 8 and r["mean_logprob"] <= 0 for r in rows)
    sent = httpx.get(f"{standin}/_standin/requests", params={"path": "/generate"}).json()
    seeds = [sp["sampling_seed"] for req in sent for sp in _sampling_params(req) if sp.get("max_new_tokens")]
    assert sorted(seeds) == sorted(r["seed"] for r in rows)  # one request item per sample, its own seed


def _sampling_params(req: dict) -> list[dict]:
    sp = req["json"]["sampling_params"]
    return sp if isinstance(sp, list) else [sp]


def test_failing_server_fails_the_job_and_keeps_finished_samples(ctx: AppContext, standin: str) -> None:
    _prompts(ctx.db)
    aborted = generation.sample_seed(11, "q1", 0)
    httpx.post(f"{standin}/_standin/config", json={"abort_seeds": [aborted]})
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, max_tokens=8, seed=11), background=False)
    # q0 and q2 are sampled alongside q1 (the engine's concurrency), so their samples are kept
    assert job.status == "failed" and "q1" in job.error and "4 of 6 responses are stored" in job.error
    assert ctx.db.fetchval("SELECT count(*) FROM response") == 4

    httpx.post(f"{standin}/_standin/config", json={"abort_seeds": [], "fail_times": 50, "fail_status": 500})
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, max_tokens=8, seed=11), background=False)
    assert job.status == "failed" and "500" in job.error
    assert ctx.db.fetchval("SELECT count(*) FROM response") == 4

    httpx.post(f"{standin}/_standin/config", json={"fail_times": 0})
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, max_tokens=8, seed=11), background=False)
    assert job.status == "done" and job.total == 2
    assert ctx.db.fetchval("SELECT count(*) FROM response") == 6


def test_unreachable_server_fails_the_job_with_a_readable_reason(db: Database) -> None:
    _prompts(db, 1)
    ctx = AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url="http://127.0.0.1:9"),
                     engine_factory=lambda cfg: SGLangEngine(cfg.sglang_url, max_retries=0, backoff=0.01))
    job = generation.start_generation(ctx, "s", SamplingSettings(n=1), background=False)
    assert job.status == "failed" and "127.0.0.1:9" in job.error
    assert db.fetchval("SELECT count(*) FROM generation_run") == 0


def test_generation_through_the_real_router(db: Database, router_on_standin: tuple[str, str]) -> None:
    router, worker = router_on_standin
    httpx.post(f"{worker}/_standin/reset").raise_for_status()
    _prompts(db, 2)
    ctx = AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=router),
                     engine_factory=lambda cfg: SGLangEngine(cfg.sglang_url, tokenize_url=worker, max_retries=1,
                                                             backoff=0.01, vocab_size=256))
    job = generation.start_generation(ctx, "s", SamplingSettings(n=3, max_tokens=8, seed=5), background=False)
    assert job.status == "done" and job.done == 6, job.error
    rows = db.fetchdicts("SELECT seed, text FROM response ORDER BY id")
    sent = httpx.get(f"{worker}/_standin/requests", params={"path": "/generate"}).json()
    seeds = [r["json"]["sampling_params"]["sampling_seed"] for r in sent
             if r["json"]["sampling_params"].get("max_new_tokens")]
    assert sorted(seeds) == sorted(r["seed"] for r in rows) and len(set(seeds)) == 6
