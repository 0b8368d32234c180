"""Issue 15: a scoring run reports the judgments it stored itself, not how much the whole judgment table grew
(counted before and after the run, outside the write lock, which also counted other people's labels)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from app.services import scoring
from app.services.context import AppContext
from backend.methods.registry import get_method
from storage import judgments, studies
from storage.db import Database
from tests.builders import label, make_prompt, make_responses
from tests.scripted_engine import ScriptedEngine


def test_a_label_stored_while_a_run_waits_for_the_lock_is_not_counted_as_the_runs(db: Database,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    study = studies.create_study(db, "s")
    pid = make_prompt(db, study.id, "q1", "What is 2 + 2?")
    rids = make_responses(db, pid, ["4", "4", "5"])
    engine = ScriptedEngine()
    method, info = get_method("select_majority"), engine.info()
    ctx = AppContext(db=db)
    inp = scoring.method_input(ctx, study, pid, method, info)
    result = method.run(inp, engine)

    # Someone's label lands just before the run takes the write lock (a second writer got there first).
    real_write = db.write

    def write_after_a_label() -> AbstractContextManager[Any]:
        monkeypatch.setattr(db, "write", real_write)
        label(db, study.id, pid, "ann", rids[0], {rids[0]: 6.0})
        return real_write()

    monkeypatch.setattr(db, "write", write_after_a_label)
    before = len(judgments.all_rows(db, study_id=study.id))
    written = scoring.store_result(ctx, study, inp, method, info, result, duration_ms=1)
    model_rows = [j for j in judgments.all_rows(db, study_id=study.id) if j.judge_kind == "model"]
    assert len(judgments.all_rows(db, study_id=study.id)) - before == written + 2  # the label's two rows
    assert written == len(model_rows) == len(result.verdicts) > 0
    # Stored again (the same idempotency keys): nothing new, and the run says so.
    assert scoring.store_result(ctx, study, inp, method, info, result, duration_ms=1) == 0
