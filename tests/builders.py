"""Quick builders for hand-made studies: prompts, responses and human labels through storage's own API."""

from __future__ import annotations

import uuid
from pathlib import Path

from storage import judgments, members, prompts, responses, studies
from storage.db import Database
from storage.migrations import MIGRATIONS
from storage.models import ChatMessage, JudgmentIn, PromptIn, ResponseIn, SamplingSettings, Study


def db_before(path: Path, migration: str) -> Database:
    """A database file as critlab left it before `migration` (a name prefix such as "m023"): every earlier
    migration applied and recorded, the later ones not, so a test can fill it the way the old code did."""
    db = Database(path, migrate=False)
    with db.write() as cur:
        cur.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())")
        for fn in MIGRATIONS:
            if fn.__name__ >= migration:
                break
            fn(cur)
            cur.execute("INSERT INTO schema_migrations (name) VALUES (?)", [fn.__name__])
    return db


def make_study(db: Database, name: str = "demo") -> Study:
    return studies.create_study(db, name)


def make_members(db: Database, study_id: int, *names: str) -> None:
    """Annotators (created when missing, with a password hash nothing verifies: they never log in) who are
    members of the study, so the label loop serves them."""
    with db.write() as cur:
        for name in names:
            cur.execute("INSERT INTO annotator (name, role, password_hash) VALUES (?, 'annotator', '!') "
                        "ON CONFLICT DO NOTHING", [name])
    for name in names:
        members.add(db, study_id, name, "test")


def make_prompt(db: Database, study_id: int, external_id: str = "p1", text: str = "Question?",
                *, system: str | None = None) -> int:
    msgs = ([ChatMessage(role="system", content=system)] if system else []) + [ChatMessage(role="user", content=text)]
    prompts.insert_prompts(db, study_id, [PromptIn(external_id=external_id, messages=msgs)])
    return db.fetchval("SELECT id FROM prompt WHERE study_id = ? AND external_id = ?", [study_id, external_id])


def make_run(db: Database, study_id: int, model_id: str = "test/model") -> int:
    return studies.create_run(db, study_id, "fake", model_id, SamplingSettings(n=3), 0,
                              seeds_honoured=True, logprob_mode="raw").id


def make_responses(db: Database, prompt_id: int, texts: list[str], *, run_id: int | None = None,
                   model_id: str | None = None) -> list[int]:
    """Sampled responses of `run_id`, or imported ones (no run) when run_id is None."""
    return responses.insert_responses(db, [
        ResponseIn(prompt_id=prompt_id, run_id=run_id, sample_index=i if run_id is not None else None,
                   origin="sampled" if run_id is not None else "imported", text=t, model_id=model_id)
        for i, t in enumerate(texts)])


def judge(db: Database, study_id: int, prompt_id: int, annotator: str, method: str, *,
          response_id: int | None, value: float | None = None, shown_order: list[int] | None = None,
          stage: str = "blind", judge_kind: str = "human") -> int:
    return judgments.record(db, [JudgmentIn(
        study_id=study_id, prompt_id=prompt_id, judge_kind=judge_kind, judge=annotator, method=method,
        response_id=response_id, value=value, shown_order=shown_order, stage=stage,
        idempotency_key=uuid.uuid4().hex)])[0]


def label(db: Database, study_id: int, prompt_id: int, annotator: str, pick: int | None,
          ratings: dict[int, float], *, shown: list[int] | None = None, stage: str = "blind",
          judge_kind: str = "human") -> int:
    """One annotator's submit: a best-of-N pick over `shown` (default: the rated responses) plus
    one likert rating per entry of `ratings`. Returns the best_of_n judgment id."""
    shown = list(ratings) if shown is None else shown
    jid = judge(db, study_id, prompt_id, annotator, "best_of_n", response_id=pick, shown_order=shown,
                stage=stage, judge_kind=judge_kind)
    for rid, value in ratings.items():
        judge(db, study_id, prompt_id, annotator, "likert", response_id=rid, value=value, stage=stage,
              judge_kind=judge_kind)
    return jid
