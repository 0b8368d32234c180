"""Issue 15: a service reads each row once per request and passes on what it read. Counted on a real
database: the statements each action sends, and the Study objects it builds (the process-wide study cache
saves the query, not the parsing of the study's settings)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.services import label_flow, labelling, overview
from app.services.context import AppContext
from storage import annotators, db as db_module, judgments, members, studies
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_prompt, make_responses, make_run


class Reads:
    def __init__(self) -> None:
        self.sql: list[str] = []
        self.studies_built = 0

    def count(self, pattern: str) -> int:
        return sum(bool(re.search(pattern, q)) for q in self.sql)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    r = Reads()
    execute, build = db_module._Guarded.execute, studies._study

    def counting_execute(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        r.sql.append(" ".join(str(args[0]).split()))
        return execute(self, *args, **kwargs)

    def counting_build(row):  # noqa: ANN001, ANN202
        r.studies_built += 1
        return build(row)

    monkeypatch.setattr(db_module._Guarded, "execute", counting_execute)
    monkeypatch.setattr(studies, "_study", counting_build)
    yield r


@contextmanager
def counted(r: Reads) -> Iterator[Reads]:
    r.sql.clear()
    r.studies_built = 0
    yield r


@pytest.fixture
def ctx(db: Database) -> AppContext:
    annotators.add_annotator(db, "root", "admin", "root-pass-123")
    annotators.add_annotator(db, "ann", "annotator", "ann-pass-123")
    annotators.add_annotator(db, "bob", "annotator", "bob-pass-123")
    s = studies.create_study(db, "s", config=StudyConfig(blind=True, reveal=True, questions=["best", "rating"],
                                                         live_annotators=True))
    studies.create_study(db, "other")
    members.add(db, s.id, "ann", "root")
    members.add(db, s.id, "bob", "root")
    run = make_run(db, s.id)
    for i in range(3):
        pid = make_prompt(db, s.id, f"q{i}")
        for rid in make_responses(db, pid, ["a", "b", "c"], run_id=run):
            judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="model", judge="m",
                                             method="p_true", response_id=rid, prob=0.5,
                                             idempotency_key=uuid.uuid4().hex)])
    return AppContext(db=db)


def _submit(item: labelling.LabelItem, stage: str = "blind") -> labelling.LabelSubmission:
    ids = [c.response_id for c in item.cards]
    return labelling.submission(study=item.study, prompt_id=item.prompt_id, shown_order=ids, stage=stage,
                                best=ids[0], ratings={i: 4 for i in ids}, idempotency_key=uuid.uuid4().hex)


PROMPT_BY_ID = r"FROM prompt WHERE id = \?"  # a read of one prompt row (the submit's UNION names it $prompt)


def test_a_label_action_builds_its_study_once_and_the_reveal_step_asks_nothing_the_submit_just_checked(
        ctx: AppContext, reads: Reads) -> None:
    with counted(reads):
        item = label_flow.open_study(ctx, "ann", "s").item
    assert item is not None and reads.studies_built == 1
    with counted(reads):
        step = label_flow.submit_and_next(ctx, "ann", _submit(item))
    assert step.event == "reveal" and step.prompt == item.prompt_external_id and step.item.show_model_view
    assert reads.studies_built == 1
    assert reads.count(PROMPT_BY_ID) == 1  # the submit checked it in its own statement; the item reads it once
    assert reads.count(r"^SELECT 1 FROM reveal") == 1  # the stage, checked under the submit's write lock
    with counted(reads):
        step = label_flow.submit_and_next(ctx, "ann", _submit(step.item, "revealed"))
    assert step.event == "saved" and step.revised and reads.studies_built == 1
    with counted(reads):
        skipped = label_flow.skip_and_next(ctx, "ann", "s", step.item.prompt_id)
    assert skipped.prompt == step.item.prompt_external_id and reads.studies_built == 1
    assert reads.count(PROMPT_BY_ID) == 2  # the skipped prompt once (checked and named), the next item's once
    with counted(reads):
        back = label_flow.back(ctx, "ann", "s", skipped.item.prompt_id if skipped.item else None)
    assert back.item is not None and reads.studies_built == 1


def test_the_page_timer_reads_the_studies_and_the_memberships_once(ctx: AppContext, reads: Reads) -> None:
    with counted(reads):
        ov = overview.page_overview(ctx, "ann", admin=False)
    assert (ov.studies, ov.live_studies) == (["s"], ["s"])
    assert reads.count(r"FROM study ORDER BY") == 1 and reads.count(r"study_member") == 1
    assert reads.count(r"FROM annotator WHERE name = \?") == 0  # the caller checked who this is
    with counted(reads):
        ov = overview.page_overview(ctx, "root", admin=True)
    assert (ov.studies, ov.live_studies) == (["s", "other"], ["s", "other"])
    assert reads.count(r"FROM study ORDER BY") == 1 and reads.count(r"FROM annotator") == 0


def test_the_admin_page_load_reads_the_studies_once_and_the_memberships_in_one_query(ctx: AppContext,
                                                                                      reads: Reads) -> None:
    with counted(reads):
        page = overview.page_load(ctx, "root", admin=True)
    assert [(p["name"], p["studies"]) for p in page.people] == [("root", None), ("ann", ["s"]), ("bob", ["s"])]
    assert page.live_prompts == ["q0", "q1", "q2"]
    assert reads.count(r"FROM study ORDER BY") == 1
    assert reads.count(r"SELECT annotator, study_id FROM study_member") == 1  # not one query per person
    assert reads.count(r"SELECT 'member', study_id FROM study_member") == 0
    assert reads.count(r"FROM annotator WHERE name = \?") == 0  # live_first is a study the overview granted


def test_a_fresh_pick_checks_its_prompt_once_under_the_write_lock(ctx: AppContext, reads: Reads) -> None:
    """Recording how a fresh pick was served reuses the pick's own check (the serving record's policy needs
    the prompt's others and its disagreement flag): one check statement and no separate flag query."""
    with counted(reads):
        item = label_flow.open_study(ctx, "ann", "s").item
    assert item is not None
    assert reads.count(r"SELECT 'labelled', judge FROM judgment WHERE prompt_id = \$p") == 1
    assert reads.count(r"FROM prompt_flag WHERE prompt_id = \? AND disagreement") == 0
    assert reads.count(r"^INSERT INTO serving") == 1
