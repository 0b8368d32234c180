"""Admin operations shared by the CLI, the admin API and the UI: study settings, re-queue, progress."""

from __future__ import annotations

import pytest

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import studies
from storage.db import Database
from tests.builders import make_prompt, make_study


def test_configure_validates_everything_before_saving(db: Database) -> None:
    ctx = AppContext(db=db)
    make_study(db, "s")
    r = run_op(ctx, "admin", "configure", {"study": "s", "config": {"overlap": 3, "questions": ["best", "pairwise"],
                                                                     "answer_extraction": "regex:Answer: (\\d+)"},
                                           "guidelines": "Be kind."})
    assert r["config"]["overlap"] == 3 and studies.get_study(db, "s").guidelines == "Be kind."
    for bad, msg in [({"overlap": 0}, "overlap"), ({"questions": ["nope"]}, "questions"),
                     ({"answer_extraction": "regex:("}, "invalid regex"), ({"colour": "red"}, "unknown study settings"),
                     ({"label_run_id": 99}, "not a run")]:
        with pytest.raises(ServiceError, match=msg):
            run_op(ctx, "admin", "configure", {"study": "s", "config": bad})
    assert studies.get_study(db, "s").config.overlap == 3  # nothing half-saved


def test_requeue_and_progress(db: Database) -> None:
    ctx = AppContext(db=db)
    s = make_study(db, "s")
    make_prompt(db, s.id, "q1")
    assert run_op(ctx, "admin", "requeue", {"study": "s", "prompt": "q1"})["requeued"]
    with pytest.raises(ServiceError, match="no prompt 'zz'"):
        run_op(ctx, "admin", "requeue", {"study": "s", "prompt": "zz"})
    assert db.fetchval("SELECT count(*) FROM requeue") == 1
    prog = run_op(ctx, "admin", "annotator_progress", {"study": "s"})
    assert prog["total"] == 1 and prog["annotators"] == []
