"""The queue order (StudyConfig.queue_order) and the serving record (storage.serving): random is a seeded
uniform permutation with its draw probability recorded, informative serves the most uncertain or disputed
prompts first, an extra annotator of a disagreement is recorded as routed, and labels never served say so."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import judgments, label_queue, serving, studies
from storage.db import Database
from storage.migrations import migrate
from storage.models import JudgmentIn, StudyConfig
from tests.builders import db_before, label, make_members, make_prompt, make_responses


def _study(db: Database, n: int, **config: object) -> tuple[AppContext, int, list[int]]:
    s = studies.create_study(db, "q", config=StudyConfig(questions=["best"], **config))
    pids = [make_prompt(db, s.id, f"p{i:02d}") for i in range(n)]
    for pid in pids:
        make_responses(db, pid, ["x", "y"])
    make_members(db, s.id, "ann", "bob")
    return AppContext(db=db), s.id, pids


def _label_next(ctx: AppContext, who: str) -> labelling.LabelItem | None:
    item = labelling.next_item(ctx, who, "q")
    if item is not None:
        order = [c.response_id for c in item.cards]
        labelling.submit(ctx, who, labelling.LabelSubmission(study="q", prompt_id=item.prompt_id, shown_order=order,
                                                             best=order[0], idempotency_key=uuid.uuid4().hex))
    return item


def _model_prob(db: Database, study_id: int, pid: int, method: str, prob: float) -> None:
    rid = db.fetchval("SELECT min(id) FROM response WHERE prompt_id = ?", [pid])
    judgments.record(db, [JudgmentIn(study_id=study_id, prompt_id=pid, judge_kind="model", judge="m", method=method,
                                     response_id=rid, prob=prob, idempotency_key=uuid.uuid4().hex)])


def test_random_order_is_a_seeded_permutation_with_its_draw_probabilities(db: Database) -> None:
    ctx, sid, pids = _study(db, 12, queue_order="random")
    served = []
    while (item := _label_next(ctx, "ann")) is not None:
        served.append(item.prompt_id)
    expected = sorted(pids, key=lambda p: hashlib.md5(f"{sid}:{p}".encode()).hexdigest())
    assert served == expected and served != pids
    rows = {r.prompt_id: r for r in serving.labelled_servings(db, sid)}
    assert [rows[p].policy for p in served] == ["random"] * 12
    # Each pick is drawn from the prompts still open: 1/12, 1/11, ..., 1/1.
    assert [rows[p].probability for p in served] == pytest.approx([1 / k for k in range(12, 0, -1)])


def test_informative_order_serves_disputed_and_uncertain_prompts_first(db: Database) -> None:
    ctx, sid, pids = _study(db, 4, queue_order="informative")
    _model_prob(db, sid, pids[0], "p_true", 0.98)  # sure: score 0.04
    _model_prob(db, sid, pids[1], "p_true", 0.55)  # uncertain: 0.9
    _model_prob(db, sid, pids[2], "p_true", 0.95)  # two methods disagree: spread 0.85, mean 0.525 -> 0.95
    _model_prob(db, sid, pids[2], "verbalized_confidence", 0.10)
    served = [_label_next(ctx, "ann").prompt_id for _ in range(4)]  # type: ignore[union-attr]
    assert served == [pids[2], pids[1], pids[0], pids[3]]  # no score (0) last
    assert {r.policy for r in serving.labelled_servings(db, sid)} == {"informative"}
    assert {r.probability for r in serving.labelled_servings(db, sid)} == {None}


def test_an_extra_annotator_of_a_disagreement_is_recorded_as_routed(db: Database) -> None:
    ctx, sid, pids = _study(db, 1, overlap=1, extra_on_disagreement=1)
    item = _label_next(ctx, "ann")
    assert item is not None
    picked = db.fetchval("SELECT response_id FROM judgment WHERE judge = 'ann' AND judge_kind = 'human'")
    other = next(c.response_id for c in item.cards if c.response_id != picked)
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pids[0], judge_kind="model", judge="m",
                                     method="select_p_true", response_id=other, idempotency_key=uuid.uuid4().hex)])
    assert label_queue.update_disagreement(db, sid, pids[0])
    assert _label_next(ctx, "bob") is not None
    got = {(r.annotator, r.policy) for r in serving.labelled_servings(db, sid)}
    assert got == {("ann", "position"), ("bob", "disagreement")}


def test_labels_that_were_never_served_say_so(db: Database) -> None:
    ctx, sid, pids = _study(db, 1)
    rid = db.fetchval("SELECT min(id) FROM response WHERE prompt_id = ?", [pids[0]])
    label(db, sid, pids[0], "imported-judge", rid, {})
    assert serving.labelled_servings(db, sid) == [serving.Served(pids[0], "imported-judge", "unserved", None)]


def test_an_unknown_queue_order_is_refused(db: Database) -> None:
    ctx, _, _ = _study(db, 1)
    with pytest.raises(ServiceError, match="queue_order"):
        run_op(ctx, "admin", "configure", {"study": "q", "config": {"queue_order": "shortest"}})
    assert studies.get_study(db, "q").config.queue_order == "position"


def test_the_migration_adds_the_serving_table_to_an_old_database(tmp_path: Path) -> None:
    old = db_before(tmp_path / "old.duckdb", "m025")
    assert not old.fetchall("SELECT 1 FROM information_schema.tables WHERE table_name = 'serving'")
    assert migrate(old)[0] == "m025_serving"
    assert old.fetchval("SELECT count(*) FROM serving") == 0
    old.close()
