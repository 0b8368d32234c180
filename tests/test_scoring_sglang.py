"""Self-scoring through the SGLang client against the stand-in server: the documented request shapes
(prefill-only `max_new_tokens: 0` reads with `token_ids_logprob`, `json_schema` sent as a string)
and stored judgments in range."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.services import scoring
from app.services.context import AppContext, EngineConfig
from backend.engines.sglang import SGLangEngine
from storage.db import Database
from tests.builders import make_prompt, make_responses, make_study


@pytest.fixture
def ctx(db: Database, standin: str) -> AppContext:
    engine = SGLangEngine(standin, max_retries=1, backoff=0.01, vocab_size=256)
    return AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=standin),
                      engine_factory=lambda cfg: engine)


def _generate_requests(url: str) -> list[dict]:
    return [r["json"] for r in httpx.get(f"{url}/_standin/requests", params={"path": "/generate"}).json()]


def test_prefill_only_methods_send_max_new_tokens_zero(ctx: AppContext, standin: str) -> None:
    s = make_study(ctx.db, "s")
    p = make_prompt(ctx.db, s.id, "q1", "Say yes")
    make_responses(ctx.db, p, ["yes", "no"])
    job = scoring.start_scoring(ctx, "s", "p_true,judge_score,pairwise", background=False)
    assert job.status == "done", job.error
    reads = [r for r in _generate_requests(standin) if r["sampling_params"] == {"max_new_tokens": 0}
             or (isinstance(r["sampling_params"], list) and r["sampling_params"][0].get("max_new_tokens") == 0)]
    assert reads and all(r.get("return_logprob") and r.get("token_ids_logprob") for r in reads)
    rows = ctx.db.fetchdicts("SELECT method, prob, value, status FROM judgment WHERE variant IS NULL")
    assert {r["method"] for r in rows} == {"p_true", "judge_score", "pairwise"}
    for r in rows:
        assert r["status"] == "ok"
        if r["method"] == "p_true":
            assert 0 <= r["prob"] <= 1
        if r["method"] == "judge_score":
            assert 0 <= r["value"] <= 9


def test_generated_checklist_sends_json_schema_as_a_string(ctx: AppContext, standin: str) -> None:
    s = make_study(ctx.db, "s")
    p = make_prompt(ctx.db, s.id, "q1", "Write a haiku")
    make_responses(ctx.db, p, ["leaves fall", "snow"])
    scoring.start_scoring(ctx, "s", "checklist", background=False)
    schemas = [sp["json_schema"] for r in _generate_requests(standin)
               for sp in (r["sampling_params"] if isinstance(r["sampling_params"], list) else [r["sampling_params"]])
               if "json_schema" in sp]
    assert schemas and all(isinstance(x, str) for x in schemas)
    assert "questions" in json.loads(schemas[0])["properties"]
    # the stand-in writes no meaningful JSON: the run still ends with a stored (possibly failed) verdict
    assert ctx.db.fetchval("SELECT count(*) FROM judgment WHERE method = 'checklist'") == 2
    assert ctx.db.fetchval("SELECT count(*) FROM method_run WHERE method = 'checklist'") == 1


def test_scoring_keeps_the_servers_concurrency_busy_and_stores_the_same(tmp_path: Path) -> None:
    """Prompts are scored as many at once as the engine takes requests; the stored verdicts are those
    of a one-at-a-time run (each prompt's reads are deterministic)."""
    from tests.standin_sglang import start_standin

    url, stop = start_standin(delay=0.1)
    try:
        results = []
        for concurrency, path in ((1, tmp_path / "one.duckdb"), (4, tmp_path / "four.duckdb")):
            with Database(path) as d:
                engine = SGLangEngine(url, concurrency=concurrency, vocab_size=256)
                ctx = AppContext(db=d, default_engine=EngineConfig(engine="sglang", sglang_url=url),
                                 engine_factory=lambda cfg, e=engine: e)
                s = make_study(d, "s")
                for i in range(8):
                    make_responses(d, make_prompt(d, s.id, f"q{i}", f"Is {i} even?"), ["yes", "no"])
                httpx.post(f"{url}/_standin/reset")
                job = scoring.start_scoring(ctx, "s", "p_true", background=False)
                assert job.status == "done" and job.done == 8, job.error
                results.append((httpx.get(f"{url}/_standin/stats").json(),
                                d.fetchall("SELECT p.external_id, r.text, j.prob FROM judgment j JOIN prompt p "
                                           "ON p.id = j.prompt_id JOIN response r ON r.id = j.response_id "
                                           "ORDER BY 1, 2")))
                engine.close()
        (one_stats, one_rows), (four_stats, four_rows) = results
        assert one_stats["max_inflight"] == 1 and four_stats["max_inflight"] > 1, (one_stats, four_stats)
        assert one_rows == four_rows and len(one_rows) == 16
    finally:
        stop()


def test_scoring_through_the_real_router(db: Database, router_on_standin: tuple[str, str]) -> None:
    router, worker = router_on_standin
    httpx.post(f"{worker}/_standin/reset").raise_for_status()
    engine = SGLangEngine(router, tokenize_url=worker, max_retries=1, backoff=0.01, vocab_size=256)
    ctx = AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=router),
                     engine_factory=lambda cfg: engine)
    s = make_study(db, "s")
    p = make_prompt(db, s.id, "q1", "Say yes")
    make_responses(db, p, ["yes", "no"])
    try:
        job = scoring.start_scoring(ctx, "s", "p_true,judge_score,pairwise,checklist", background=False)
    finally:
        engine.close()
    assert job.status == "done", job.error
    rows = db.fetchdicts("SELECT method, status FROM judgment WHERE variant IS NULL")
    assert {r["method"] for r in rows} == {"p_true", "judge_score", "pairwise", "checklist"}
    # the stand-in writes no meaningful checklist JSON: those verdicts are stored, possibly failed
    assert all(r["status"] == "ok" for r in rows if r["method"] != "checklist"), rows
    assert sum(r["method"] == "checklist" for r in rows) == 2
    sent = [r["json"] for r in httpx.get(f"{worker}/_standin/requests", params={"path": "/generate"}).json()]
    assert any(r["sampling_params"].get("max_new_tokens") == 0 and r.get("token_ids_logprob") for r in sent)
    assert any(isinstance(r["sampling_params"].get("json_schema"), str) for r in sent)  # the checklist
