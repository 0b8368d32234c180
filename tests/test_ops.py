"""Admin operations shared by the CLI, the admin API and the UI: study settings, re-queue, progress."""

from __future__ import annotations

import time

import pytest

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op, run_op_then_people
from storage import annotators, sessions, studies
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


def test_disable_enable_and_reset_password(db: Database) -> None:
    ctx = AppContext(db=db)
    run_op(ctx, "cli", "add_annotator", {"name": "root", "role": "admin", "password": "root-pass-1"})
    run_op(ctx, "cli", "add_annotator", {"name": "ann", "password": "ann-pass-12"})
    now = time.time()
    for sid in ("s1", "s2"):
        sessions.create(db, sid, "ann", now)

    def live_sessions() -> list[str]:
        # lookup refuses a disabled person as well: read the rows themselves
        return [r[0] for r in db.fetchall("SELECT end_reason FROM login_session WHERE annotator = 'ann' "
                                          "ORDER BY created_at, id_hash")]

    r = run_op(ctx, "root", "disable_annotator", {"name": "ann"})
    assert r == {"id": 2, "name": "ann", "role": "annotator", "disabled": True}
    assert annotators.authenticate(db, "ann", "ann-pass-12") is None
    assert live_sessions() == ["disabled", "disabled"]  # every session issued before is over
    run_op(ctx, "root", "disable_annotator", {"name": "ann"})  # again: no change, no error
    assert live_sessions() == ["disabled", "disabled"]
    assert run_op(ctx, "root", "list_annotators", {})["annotators"][1]["disabled"] is True

    assert run_op(ctx, "root", "enable_annotator", {"name": "ann"})["disabled"] is False
    assert annotators.authenticate(db, "ann", "ann-pass-12").name == "ann"
    assert sessions.lookup(db, "s1", "ann") is None  # ended sessions stay ended

    sessions.create(db, "s3", "ann", now)
    assert sessions.lookup(db, "s3", "ann") is not None
    r = run_op(ctx, "root", "reset_password", {"name": "ann"})
    assert len(r["password"]) >= 12 and annotators.authenticate(db, "ann", r["password"]).name == "ann"
    assert annotators.authenticate(db, "ann", "ann-pass-12") is None
    assert sessions.lookup(db, "s3", "ann") is None
    assert db.fetchval("SELECT end_reason FROM login_session WHERE id_hash = ?", [sessions.id_hash("s3")]) == \
        "password"
    r = run_op(ctx, "root", "reset_password", {"name": "ann", "password": "chosen-pass-1"})
    assert r["password"] is None  # a password the admin chose is not echoed back
    assert annotators.authenticate(db, "ann", "chosen-pass-1").name == "ann"


def test_people_operations_refuse_bad_input_and_change_nothing(db: Database) -> None:
    ctx = AppContext(db=db)
    run_op(ctx, "cli", "add_annotator", {"name": "root", "role": "admin", "password": "root-pass-1"})
    run_op(ctx, "cli", "add_annotator", {"name": "ann", "password": "ann-pass-12"})
    before = db.fetchall("SELECT * FROM annotator ORDER BY id")
    for op, payload, msg in [("disable_annotator", {"name": "zz"}, "no annotator 'zz'"),
                             ("enable_annotator", {"name": "zz"}, "no annotator 'zz'"),
                             ("reset_password", {"name": "zz"}, "no annotator 'zz'"),
                             ("reset_password", {"name": "ann", "password": "short"}, "at least 8 characters"),
                             ("disable_annotator", {"name": "root"}, "'root' is the last enabled admin")]:
        with pytest.raises(ValueError, match=msg):
            run_op(ctx, "root", op, payload)
    with pytest.raises(ValueError, match="name"):
        run_op(ctx, "root", "disable_annotator", {})
    assert db.fetchall("SELECT * FROM annotator ORDER BY id") == before
    # With a second enabled admin the first may be disabled.
    run_op(ctx, "cli", "add_annotator", {"name": "root2", "role": "admin", "password": "root-pass-2"})
    assert run_op(ctx, "root2", "disable_annotator", {"name": "root"})["disabled"] is True
    with pytest.raises(ValueError, match="last enabled admin"):
        run_op(ctx, "root2", "disable_annotator", {"name": "root2"})


def test_an_admin_tab_action_returns_the_people_as_they_stand_after_it(db: Database) -> None:
    """The Admin tab's callbacks make one service call: the action, then the people list it shows next."""
    ctx = AppContext(db=db)
    r, people = run_op_then_people(ctx, "cli", "add_annotator", {"name": "ann", "role": "annotator"})
    assert r["name"] == "ann" and [p["name"] for p in people] == ["ann"]
    r, people = run_op_then_people(ctx, "cli", "disable_annotator", {"name": "ann"})
    assert people == run_op(ctx, "cli", "list_annotators", {})["annotators"] and people[0]["disabled"] is True
    with pytest.raises(ValueError, match="already exists"):  # a refused action lists nobody, changes nothing
        run_op_then_people(ctx, "cli", "add_annotator", {"name": "ann", "role": "annotator"})
    assert [a.name for a in annotators.list_annotators(db)] == ["ann"]
