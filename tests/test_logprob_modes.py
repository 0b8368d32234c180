"""Logprob modes are stored true: SGLang without SGLANG_RETURN_ORIGINAL_LOGPROB reports softmax(logits / T) for
sampled tokens, which is raw at T = 0 (greedy) and T = 1; a run never mixes modes; teacher-forced scoring asks for
the run's top-k; the migration relabels the temperature-0 and temperature-1 runs stored as temperature-scaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services import generation, scoring
from app.services.context import AppContext, EngineConfig
from backend.engines.base import EngineInfo
from backend.engines.sglang import SGLangEngine
from backend.methods.registry import get_method
from storage import studies
from storage.db import Database
from storage.migrations import MIGRATIONS, migrate
from storage.models import SamplingSettings
from tests.builders import db_before, make_prompt, make_responses, make_study


def _ctx(db: Database, url: str) -> AppContext:
    def factory(cfg: EngineConfig) -> SGLangEngine:
        return SGLangEngine(cfg.sglang_url, max_retries=1, backoff=0.01, vocab_size=256,
                            raw_logprobs=cfg.sglang_raw_logprobs)
    return AppContext(db=db, default_engine=EngineConfig(engine="sglang", sglang_url=url), engine_factory=factory)


@pytest.mark.parametrize(("temperature", "mode"), [(0.0, "raw"), (0.7, "temperature_scaled"), (1.0, "raw")])
def test_sglang_runs_and_responses_store_the_true_mode(db: Database, standin: str, temperature: float,
                                                       mode: str) -> None:
    ctx = _ctx(db, standin)
    make_prompt(db, make_study(db, "s").id, "q0", "Say 0")
    job = generation.start_generation(ctx, "s", SamplingSettings(n=2, max_tokens=4, temperature=temperature, seed=1),
                                      background=False)
    assert job.status == "done"
    assert db.fetchall("SELECT logprob_mode FROM generation_run") == [(mode,)]
    assert db.fetchall("SELECT DISTINCT logprob_mode FROM response") == [(mode,)]


def test_a_run_is_not_resumed_in_another_logprob_mode(db: Database, standin: str) -> None:
    ctx = _ctx(db, standin)
    s = make_study(db, "s")
    for i in range(2):
        make_prompt(db, s.id, f"q{i}", f"Say {i}")
    settings = SamplingSettings(n=1, max_tokens=4, temperature=0.7, seed=1)
    run = generation.resolve_run(ctx, "s", settings, ctx.default_engine, new_run=False)
    assert run.logprob_mode == "temperature_scaled"
    raw = ctx.default_engine.model_copy(update={"sglang_raw_logprobs": True})  # the server restarted with it
    job = generation.start_generation(ctx, "s", settings, raw, background=False)
    assert job.status == "failed" and "has temperature_scaled logprobs, but the engine now gives raw" in job.error
    assert db.fetchval("SELECT count(*) FROM response") == 0


def test_teacher_forced_scoring_asks_for_the_runs_top_k(db: Database) -> None:
    s = make_study(db, "s")
    pid = make_prompt(db, s.id, "q0", "Say 0")
    run = studies.create_run(db, s.id, "sglang", "m", SamplingSettings(n=1, top_logprobs=20), 0,
                             seeds_honoured=True, logprob_mode="temperature_scaled")
    make_responses(db, pid, ["zero"], run_id=run.id)
    info = EngineInfo(engine="sglang", model_id="m", context_length=4096, self_certainty="topk_proxy",
                      logprob_mode="temperature_scaled")
    inp = scoring.method_input(AppContext(db=db), s, pid, get_method("neg_entropy"), info)
    assert inp.top_logprobs == 20


# -- the migration ------------------------------------------------------------------------------------------
MIGRATION = "m024_true_logprob_modes"


def test_the_migration_relabels_greedy_and_unit_temperature_runs_as_raw(tmp_path: Path) -> None:
    assert MIGRATION in [fn.__name__ for fn in MIGRATIONS]
    db = db_before(tmp_path / "old.duckdb", MIGRATION)  # a database as it was before this migration
    with db.write() as cur:
        cur.execute("INSERT INTO study (name) VALUES ('s')")
        cur.execute("INSERT INTO prompt (study_id, external_id, position, messages) VALUES (1, 'q', 0, '[]')")
        runs = [(1, 0.0, "temperature_scaled", "batch"), (2, 0.7, "temperature_scaled", "batch"),
                (3, 1.0, "temperature_scaled", "batch"), (4, 0.0, "raw", "batch"),
                (5, 0.7, "temperature_scaled", "live")]
        for rid, t, mode, kind in runs:
            cur.execute("""INSERT INTO generation_run (id, study_id, engine, model_id, n, temperature, top_p,
                           max_tokens, seed_base, top_logprobs, logprob_mode, kind)
                           VALUES (?, 1, 'sglang', 'm', 1, ?, 0.9, 8, 0, 5, ?, ?)""", [rid, t, mode, kind])
            # Live responses on SGLang were teacher-forced after the stream: raw, under a run labelled scaled.
            cur.execute("""INSERT INTO response (prompt_id, run_id, sample_index, origin, text, token_count,
                           logprob_mode) VALUES (1, ?, 0, 'sampled', 'x', 1, ?)""",
                        [rid, "raw" if kind == "live" else mode])
        cur.execute("INSERT INTO response (prompt_id, origin, text) VALUES (1, 'imported', 'y')")
    assert MIGRATION in migrate(db)
    assert db.fetchall("SELECT id, logprob_mode FROM generation_run ORDER BY id") == [
        (1, "raw"), (2, "temperature_scaled"), (3, "raw"), (4, "raw"), (5, "raw")]
    assert db.fetchall("SELECT run_id, logprob_mode FROM response ORDER BY id") == [
        (1, "raw"), (2, "temperature_scaled"), (3, "raw"), (4, "raw"), (5, "raw"), (None, None)]
    db.close()


def test_the_cli_says_the_server_returns_raw_logprobs() -> None:
    from app.cli import generate
    from app.cli_engine import engine_cfg

    args = ["--study", "s", "--engine", "sglang", "--sglang-url", "http://gpu:30000"]
    for extra, raw in (([], False), (["--sglang-raw-logprobs"], True)):
        with generate.make_context("generate", args + extra) as ctx:  # the flags' sources are read from it
            assert engine_cfg(dict(ctx.params)).sglang_raw_logprobs is raw
