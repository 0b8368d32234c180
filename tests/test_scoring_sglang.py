"""Self-scoring through the SGLang client against the stand-in server: the documented request shapes
(prefill-only `max_new_tokens: 0` reads with `token_ids_logprob`, `json_schema` sent as a string)
and stored judgments in range."""

from __future__ import annotations

import json
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
