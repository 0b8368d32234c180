"""Finding 2 of the labelling issue: going back to a revealed item must not corrupt its labels.

Rules (app/services/labelling.py): once a person has seen the model's view of an item nothing of theirs
for it is stored as blind; back reopens the latest stage with the latest answers; an edit supersedes
exactly the stage it edits.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.services import labelling
from app.services.context import AppContext, ServiceError
from storage import annotators, judgments, studies
from storage.db import Database
from storage.migrations import migrate
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_members, make_prompt, make_responses


def _study(db: Database, n_prompts: int = 2, **config) -> tuple[AppContext, int, list[int]]:
    s = studies.create_study(db, "rv", config=StudyConfig(**config))
    pids = [make_prompt(db, s.id, f"q{i}") for i in range(n_prompts)]
    for pid in pids:
        make_responses(db, pid, ["first", "second"])
        judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="model", judge="m",
                                         method="p_true", response_id=None, prob=0.7,
                                         idempotency_key=uuid.uuid4().hex)])
    make_members(db, s.id, "a")
    return AppContext(db=db), s.id, pids


def _submit(ctx: AppContext, item: labelling.LabelItem, ratings: tuple[int, int], best: int = 0,
            stage: str | None = None, key: str | None = None, **answers) -> labelling.SubmitResult:
    order = [c.response_id for c in item.cards]
    return labelling.submit(ctx, "a", labelling.LabelSubmission(
        study="rv", prompt_id=item.prompt_id, shown_order=order, best=order[best],
        ratings=dict(zip(order, ratings)), stage=stage or item.stage, idempotency_key=key or uuid.uuid4().hex,
        **answers))


def _current(db: Database, sid: int, stage: str) -> dict[tuple[str, int | None], float | None]:
    return {(j.method, j.response_id): j.value for j in judgments.current(db, study_id=sid, judge="a", stage=stage)}


def _dump(db: Database) -> list[tuple]:
    return db.fetchall("SELECT * FROM judgment ORDER BY id")


def test_back_to_a_revealed_item_reopens_the_revealed_stage_with_the_latest_answers(db: Database) -> None:
    ctx, sid, pids = _study(db)
    item = labelling.next_item(ctx, "a", "rv")
    assert _submit(ctx, item, (6, 2)).reveal
    revealed = labelling.open_item(ctx, "a", "rv", item.prompt_id, stage="revealed")
    _submit(ctx, revealed, (3, 5), best=1)
    labelling.next_item(ctx, "a", "rv", after=item.prompt_id)  # on to the next item, then ← back
    back = labelling.previous_item(ctx, "a", "rv", pids[1] if item.prompt_id == pids[0] else pids[0])
    assert back.prompt_id == item.prompt_id
    assert back.stage == "revealed" and back.show_model_view and back.views  # not the blind stage
    r0, r1 = (c.response_id for c in back.cards)
    assert back.answers.ratings == {r0: 3, r1: 5} and back.answers.best == r1  # the revision, not the blind answers
    blind_before = _current(db, sid, "blind")
    _submit(ctx, back, (4, 4))  # the edit
    assert _current(db, sid, "blind") == blind_before  # the blind label is untouched
    assert _current(db, sid, "revealed") == {("best_of_n", r0): None, ("likert", r0): 4.0, ("likert", r1): 4.0}
    again = labelling.previous_item(ctx, "a", "rv", None)
    assert again.stage == "revealed" and again.answers.ratings == {r0: 4, r1: 4}  # the edit is not undone


def test_a_blind_submit_after_the_reveal_is_refused_and_stores_nothing(db: Database) -> None:
    ctx, _, _ = _study(db)
    item = labelling.next_item(ctx, "a", "rv")
    _submit(ctx, item, (6, 2))
    labelling.open_item(ctx, "a", "rv", item.prompt_id, stage="revealed")  # the model's view is shown
    before = _dump(db)
    with pytest.raises(ServiceError, match="seen the model's view"):
        _submit(ctx, item, (1, 1), stage="blind")  # e.g. a stale second tab still on the blind form
    assert _dump(db) == before


def test_seeing_the_view_without_revising_still_ends_blind_labelling(db: Database) -> None:
    ctx, sid, _ = _study(db)
    item = labelling.next_item(ctx, "a", "rv")
    _submit(ctx, item, (6, 2))
    labelling.open_item(ctx, "a", "rv", item.prompt_id, stage="revealed")
    back = labelling.previous_item(ctx, "a", "rv", None)
    assert back.stage == "revealed"
    assert back.answers.ratings == {c.response_id: v for c, v in zip(back.cards, (6, 2))}  # starts from blind
    with pytest.raises(ServiceError, match="can no longer be opened blind"):
        labelling.open_item(ctx, "a", "rv", item.prompt_id, stage="blind")
    _submit(ctx, back, (6, 2))  # "as is": the revealed label equals the blind one
    assert _current(db, sid, "blind").values() and all(
        v == _current(db, sid, "revealed")[k] for k, v in _current(db, sid, "blind").items())


def test_an_edit_replaces_the_whole_stage_and_a_late_retry_changes_nothing(db: Database) -> None:
    ctx, sid, _ = _study(db, reveal=False)
    item = labelling.next_item(ctx, "a", "rv")
    first_key = uuid.uuid4().hex
    _submit(ctx, item, (6, 2), key=first_key, comment="too long")
    back = labelling.previous_item(ctx, "a", "rv", None)
    assert back.stage == "blind" and back.answers.comment == "too long"  # never revealed: stays blind
    _submit(ctx, back, (5, 3))  # the comment cleared
    after = _current(db, sid, "blind")
    assert ("comment", None) not in after and len(after) == 3
    _submit(ctx, item, (6, 2), key=first_key, comment="too long")  # the first submit, retried late
    assert _current(db, sid, "blind") == after


def test_the_json_api_refuses_a_blind_submit_after_the_reveal_with_400(tmp_path: Path) -> None:
    db = Database(tmp_path / "api.duckdb")
    ctx, _, _ = _study(db)
    annotators.set_password(db, "a", "a-password-1")  # _study made "a" a member
    with TestClient(create_app(ctx, admin_token="t" * 32), base_url="http://testserver") as client:
        assert client.post("/api/login", json={"name": "a", "password": "a-password-1"}).status_code == 200
        item = client.get("/api/studies/rv/next").json()["item"]
        order = [c["response_id"] for c in item["cards"]]
        body = {"prompt_id": item["prompt_id"], "shown_order": order, "best": order[0], "idempotency_key": "k" * 10}
        assert client.post("/api/studies/rv/judgments", json=body).json()["reveal"] is True
        shown = client.get(f"/api/studies/rv/items/{item['prompt_id']}", params={"stage": "revealed"}).json()["item"]
        assert shown["show_model_view"] and shown["views"]
        before = _dump(db)
        r = client.post("/api/studies/rv/judgments", json={**body, "best": order[1], "idempotency_key": "j" * 10})
        assert r.status_code == 400 and "seen the model's view" in r.json()["error"]
        assert _dump(db) == before
        assert client.get(f"/api/studies/rv/items/{item['prompt_id']}").json()["item"]["stage"] == "revealed"
    db.close()


def test_migration_restamps_blind_rows_stored_after_the_reveal(tmp_path: Path) -> None:
    """The rows the old ← path wrote (finding 2's sequence) are re-stamped; the blind label made before the
    reveal is current again and the latest revealed row wins its slot."""
    db = Database(tmp_path / "old.duckdb")
    _, sid, pids = _study(db, 1)
    pid = pids[0]
    r0, r1 = (r[0] for r in db.fetchall("SELECT id FROM response WHERE prompt_id = ? ORDER BY id", [pid]))

    def submit(stage: str, rating: float) -> None:
        with db.write():  # one transaction per submit, as the service does (distinct created_at)
            judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge="a",
                                             method="likert", response_id=r0, value=rating, stage=stage,
                                             idempotency_key=uuid.uuid4().hex)])

    submit("blind", 6)  # the blind label
    submit("revealed", 3)  # the revision after reveal
    submit("blind", 4)  # ← back reopened the blind form: the edit was stored as blind
    submit("revealed", 3)  # the revealed form reloaded the old answers, submitted as is
    other = judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge="b",
                                             method="likert", response_id=r1, value=2, stage="blind",
                                             idempotency_key=uuid.uuid4().hex)])
    with db.write() as cur:  # back to the schema before the migration
        cur.execute("DROP TABLE reveal")
        cur.execute("DELETE FROM schema_migrations WHERE name = 'm017_reveal'")
    assert migrate(db) == ["m017_reveal"]
    rows = db.fetchall("SELECT value, stage, superseded_at IS NULL FROM judgment WHERE judge = 'a' ORDER BY id")
    assert rows == [(6.0, "blind", True), (3.0, "revealed", False), (4.0, "revealed", False),
                    (3.0, "revealed", True)]
    assert db.fetchall("SELECT annotator FROM reveal") == [("a",)]
    assert db.fetchall("SELECT stage, superseded_at IS NULL FROM judgment WHERE id = ?", other) == [("blind", True)]
    db.close()
