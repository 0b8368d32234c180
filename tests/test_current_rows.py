"""storage.current's one rule for current judgment rows, and what each reader gets from it on a database that
holds two current rows of one slot (as one written before supersede-on-edit held could)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from app.services.agreement import method_info
from app.services.labelling import _answers
from storage import judgments
from storage.analysis.report import build_report
from storage.current import current_sql
from storage.db import Database
from storage.export.data import load_chunk
from storage.models import HumanMethod, JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses


def _rating(study_id: int, pid: int, rid: int, value: float, *, stage: str = "blind",
            kind: str = "human", judge: str = "ann") -> JudgmentIn:
    method = HumanMethod.RATING if kind == "human" else "judge_score"
    return JudgmentIn(study_id=study_id, prompt_id=pid, judge_kind=kind, judge=judge, method=method,
                      response_id=rid, value=value, stage=stage, idempotency_key=uuid.uuid4().hex)


@pytest.fixture()
def twice(db: Database) -> tuple[Database, int, int, int, int]:
    """ann rates a 2 then 6 (the 2 made current again, as an old database may hold it) and b 5; a model scores
    a revealed 0.9 and later blind 0.4. Returns (db, study, prompt, a, b)."""
    s = create_study(db, "dup", config=StudyConfig(questions=["rating"]))
    pid = make_prompt(db, s.id, "q0")
    a, b = make_responses(db, pid, ["one", "two"])
    judgments.record(db, [_rating(s.id, pid, a, 2.0), _rating(s.id, pid, b, 5.0)])
    judgments.record(db, [_rating(s.id, pid, a, 6.0)])
    judgments.record(db, [_rating(s.id, pid, a, 0.9, stage="revealed", kind="model", judge="m")])
    judgments.record(db, [_rating(s.id, pid, a, 0.4, kind="model", judge="m")])
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with db.write() as cur:
        cur.execute("UPDATE judgment SET superseded_at = NULL")
        for i, jid in enumerate(r[0] for r in cur.execute("SELECT id FROM judgment ORDER BY id").fetchall()):
            cur.execute("UPDATE judgment SET created_at = ? WHERE id = ?", [t0 + timedelta(minutes=i), jid])
    return db, s.id, pid, a, b


def _values(db: Database, study_id: int, one_per: str) -> list[tuple[str, float]]:
    return [(r[0], r[1]) for r in db.fetchall(
        current_sql("j.stage, j.value", "j.study_id = $study", one_per=one_per) + " ORDER BY j.id",  # type: ignore[arg-type]
        {"study": study_id})]


def test_one_per_row_slot_and_target(twice: tuple[Database, int, int, int, int]) -> None:
    db, sid, *_ = twice
    assert _values(db, sid, "row") == [("blind", 2.0), ("blind", 5.0), ("blind", 6.0), ("revealed", 0.9),
                                       ("blind", 0.4)]
    # one per slot: ann's latest rating of a; the model keeps one verdict per stage
    assert _values(db, sid, "slot") == [("blind", 5.0), ("blind", 6.0), ("revealed", 0.9), ("blind", 0.4)]
    # one per target: blind preferred over the revealed verdict
    assert _values(db, sid, "target") == [("blind", 5.0), ("blind", 6.0), ("blind", 0.4)]


def test_the_export_and_the_prefill_read_the_latest_rating(twice: tuple[Database, int, int, int, int]) -> None:
    db, sid, pid, a, b = twice
    human = load_chunk(db, sid, [pid], human_methods=[HumanMethod.RATING], model_method=None,
                       model_judge=None).human[pid]
    assert {r: x.value for r, x in human.ratings["ann"].items()} == {a: 6.0, b: 5.0}
    mine = judgments.current(db, study_id=sid, judge="ann", prompt_id=pid, judge_kind="human")
    assert _answers(mine).ratings == {a: 6, b: 5}


def test_the_report_counts_one_human_label_per_slot(twice: tuple[Database, int, int, int, int]) -> None:
    db, sid, *_ = twice
    rep = build_report(db, sid, method_info=method_info, n_boot=0)
    assert rep["counts"]["humans"] == [{"judge": "ann", "n_prompts": 1, "n_judgments": 2}]
